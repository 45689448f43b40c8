"""precision-overflow: under --precision, layers whose outputs or gradients exceed a number
format's largest value."""

from __future__ import annotations

from collections.abc import Iterator

from gradcheck_cli.judge.rules.base import AppliesWhen, rule
from gradcheck_cli.judge.rules.precision_common import (
    PrecisionLimits,
    asked_for_precision,
    precision_findings,
)
from gradcheck_cli.records.findings import Finding, Severity
from gradcheck_cli.records.stats import ProbeResult


@rule(
    id="precision-overflow",
    severity=Severity.ERROR,
    fixes=("precision", "grad-scaler"),
    limits=PrecisionLimits,
    applies_when=AppliesWhen(asked_for_precision, "no --precision formats asked for"),
)
def precision_overflow(probe: ProbeResult, limits: PrecisionLimits) -> Iterator[Finding]:
    """A layer whose values do not fit a number format asked for with `--precision`: too large.

    ## What it detects
    With `--precision fp16` (or bf16, fp8-e4m3, fp8-e5m2, all) the first batch runs once in
    float32. Each layer with parameters is then run again in the format (its input, weights and
    buffers cast to float16/bfloat16; for fp8 each operand rounded through the fp8 dtype and the
    arithmetic done in float32, since torch has no fp8 matmul on a CPU) and its output compared with
    the float32 one. It fires for a layer whose relative error there is above the format's
    tolerance while some of its outputs exceed the format's largest value (fp16 65504, bf16
    3.4e38), or whose gradients overflow the format and still lose more than the tolerance at the
    suggested loss scale. Outputs that become inf count as lost. In fp8 (largest values: e4m3 448,
    e5m2 57344) every tensor is scaled by its own power of two first, as fp8 recipes do, so an fp8
    output cannot overflow; the shares above the largest value are still reported, unscaled.

    ## Why it matters
    An overflowed activation is inf or a clipped value in the next layer's input: the loss turns
    NaN on the first step, or the model trains on wrong numbers. Loss scaling cannot help an
    activation; a gradient that overflows needs a loss scale below 1.

    ## Evidence
    `format`, `tolerance`, `method` (how the layers were run), `loss_scale` (the suggested scale),
    `loss_scale_min`, `loss_scale_max`, `loss_scale_fits` (the range of scales S with max|g|*S at
    most the format's largest value and the 1% quantile of nonzero |g| times S at least its smallest
    subnormal), `worst_layer`, and one list per measure in the order of the finding's layers:
    `verdicts`, `confirmed_errors` (relative L2 error of the output run in the format),
    `confirmed_nonfinites`, `grad_errors` and `grad_error_scaleds` (output and parameter gradients
    rounded through the format, unscaled and at the suggested scale), `activation_underflows`,
    `activation_overflows`, `grad_underflows`, `grad_overflows` (shares of elements).

    ## Thresholds
    The format's tolerance: 8 unit roundoffs (bf16 0.031, fp16 0.0039), at most 0.25 (fp8).
    `tolerance_factor` = 1: report only layers whose deciding error is above the tolerance times
    this factor (the JSON verdicts keep the default). An error when a layer must stay in higher
    precision, a warning when a loss scale fixes it.

    ## Fixes
    precision: keep the layer in float32 (torch.autocast(..., enabled=False) around it, input
    cast with .float()), leave it out of the fp8 recipe, or rescale what it computes.
    grad-scaler: for overflowing gradients, a loss scale below 1 (the suggested one).

    ## Example
    A Linear layer whose outputs are around 1e5 fires for fp16 (65504 is the largest float16):
    run in float16 its output is inf, confirmed_error 1. The same model is fine in bf16.
    """
    yield from precision_findings(probe, limits, "precision-overflow", "overflow")
