"""precision-rounding: under --precision, layers a number format's few mantissa bits cannot
carry, though nothing overflows or underflows."""

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
    id="precision-rounding",
    severity=Severity.ERROR,
    fixes=("precision",),
    limits=PrecisionLimits,
    applies_when=AppliesWhen(asked_for_precision, "no --precision formats asked for"),
)
def precision_rounding(probe: ProbeResult, limits: PrecisionLimits) -> Iterator[Finding]:
    """A layer whose output, run in a number format asked for with `--precision`, is off by more
    than the format's tolerance although its values are within the format's range.

    ## What it detects
    The layer is run in the format (float16/bfloat16 natively; fp8 by rounding every operand
    through the fp8 dtype at its own power-of-two scale, as fp8 recipes scale each tensor, and
    computing in float32) on the inputs of the float32 reference pass.
    Its relative error against float32 is above the format's tolerance, and fewer than 1% of its
    outputs are below the smallest normal and none above the largest value: the error comes
    from rounding (cancellation in a sum of large terms, or a format with 2-3 mantissa bits).

    ## Why it matters
    The next layers see a different function than the one trained in float32; small errors of
    one layer compound through depth.

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
    `tolerance_factor` = 1 scales it for this finding.

    ## Fixes
    precision: keep the layer in a wider format (bf16 or float32 for an fp8 recipe, float32 for
    bf16), or change what it computes so fewer large terms cancel (a normalisation before it).

    ## Example
    A Linear layer computing the small difference of two large, nearly equal sums (its input a
    large constant plus noise, its weights summing to about zero) fires in bf16.
    """
    yield from precision_findings(probe, limits, "precision-rounding", "rounding")
