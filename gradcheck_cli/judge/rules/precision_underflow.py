"""precision-underflow: under --precision, layers whose outputs or gradients fall below a number
format's smallest normal value."""

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
    id="precision-underflow",
    severity=Severity.ERROR,
    fixes=("precision", "grad-scaler"),
    limits=PrecisionLimits,
    applies_when=AppliesWhen(asked_for_precision, "no --precision formats asked for"),
)
def precision_underflow(probe: ProbeResult, limits: PrecisionLimits) -> Iterator[Finding]:
    """A layer whose values do not fit a number format asked for with `--precision`: too small.

    ## What it detects
    From the float32 reference pass of `--precision`, the share of each layer's output, output
    gradient and parameter gradient elements that are nonzero but below the format's smallest
    normal (fp16 2^-14, bf16 2^-126, fp8-e4m3 2^-6, fp8-e5m2 2^-14): they become subnormal, with
    fewer significant bits, or, below half the smallest subnormal (fp16 2^-24, fp8-e4m3 2^-9,
    fp8-e5m2 2^-16, bf16 2^-133), zero. It fires where that costs more than the format's
    tolerance, measured: the layer run in the format gives an output that far from float32
    (keep it in higher precision), or its gradients rounded through the format lose that much or
    more than 1% of their elements to zero. When the gradients are fine at the suggested loss
    scale it is a warning (needs scaling); when not even that scale keeps them, an error.

    ## Why it matters
    Outputs that underflow carry a few bits or none to the next layer; gradients that underflow
    are no update. Both happen silently: the loss looks like a plateau.

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
    The format's tolerance: 8 unit roundoffs (bf16 0.031, fp16 0.0039), at most 0.25 (fp8); a
    gradient also needs scaling when more than 1% of its nonzero elements round to zero.
    `tolerance_factor` = 1 scales the tolerance for this finding (the JSON verdicts keep the default).

    ## Fixes
    grad-scaler: scale the loss (torch.amp.GradScaler(init_scale=the suggested scale)).
    precision: keep a layer whose outputs underflow in float32 or bf16, or rescale them (a
    normalisation, a larger init) so they sit in the format's normal range.

    ## Example
    A Linear layer whose outputs are around 2^-20 fires for fp16: every output is below 2^-14,
    run in float16 its output is off by several percent. In bf16 none underflows and it is fine.
    """
    yield from precision_findings(probe, limits, "precision-underflow", "underflow")
