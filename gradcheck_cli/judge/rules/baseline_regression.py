"""baseline-regression: with --baseline, a run that got worse than the saved report."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import AppliesWhen, rule
from gradcheck_cli.records.findings import Finding, Severity
from gradcheck_cli.records.stats import ProbeResult


@dataclass(frozen=True, slots=True)
class BaselineRegressionLimits:
    """No thresholds of its own: the limit is `--baseline-orders` (config `baseline-orders`)."""


@rule(
    id="baseline-regression",
    severity=Severity.ERROR,
    fixes=(),
    limits=BaselineRegressionLimits,
    stage="baseline",
    applies_when=AppliesWhen(lambda r: r.baseline is not None, "no --baseline given"),
)
def baseline_regression(probe: ProbeResult, limits: BaselineRegressionLimits) -> Iterator[Finding]:
    """A finding the baseline did not have, or a layer's gradient ratio that moved too far.

    ## What it detects
    With `--baseline FILE` (a report saved with `--format json`), the run is compared
    with the saved one after diagnosis and policy: a finding id the baseline did not
    have is a regression, and so is a layer whose gradient/weight ratio fell by more
    than `--baseline-orders` orders of magnitude, or rose that much into a bad status.
    Findings the baseline already had stay in the report at info severity, marked
    "(in baseline)". This finding is made by the baseline stage, not from the probe's
    measurements alone, so diagnosis does not run this check.

    ## Why it matters
    A CI gate on a model that already has known findings should fail on what a change
    made worse, not on what was there before.

    ## Evidence
    `baseline` (the file), `new_findings` (ids), `orders_limit` (the threshold),
    `worst_orders` (log10 of the largest fall among the regressed layers). The
    report's `baseline` section lists every regressed, added and removed layer.

    ## Thresholds
    `--baseline-orders` = 1: a layer regresses when its gradient/weight ratio falls by
    more than one order of magnitude. Ratios wobble between seeds by a fraction of an order.

    ## Fixes
    None automatic: undo the change that made the gradient worse, or save a new baseline
    (`--format json --output FILE`) when the change is intended.

    ## Example
    Save `gradcheck analyze builtin:residual-mlp --format json --output base.json`, then
    `gradcheck analyze builtin:sigmoid-mlp --baseline base.json` fires (new findings);
    `gradcheck analyze builtin:residual-mlp --baseline base.json` does not.
    """
    return
    yield
