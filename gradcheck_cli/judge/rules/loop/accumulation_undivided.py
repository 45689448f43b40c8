"""accumulation-undivided: gradient accumulation over K micro-batches whose loss is not divided by K."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import rule
from gradcheck_cli.judge.rules.loop.common import span, watched
from gradcheck_cli.judge.rules.profile import sig
from gradcheck_cli.records.findings import Finding, Severity, Suggestion
from gradcheck_cli.records.stats import ProbeResult


@dataclass(frozen=True, slots=True)
class AccumulationLimits:
    min_points: float = 2
    """Measured steps with accumulation and a known loss divisor needed."""


@rule(
    id="accumulation-undivided",
    severity=Severity.ERROR,
    fixes=("lr",),
    limits=AccumulationLimits,
    needs_history=True,
)
def accumulation_undivided(probe: ProbeResult, limits: AccumulationLimits) -> Iterator[Finding]:
    """Gradient accumulation over K micro-batches without dividing each micro-batch's loss by K.

    ## What it detects
    From the monitor's loop record: measured steps at which K >= 2 backward passes reached the
    parameters before one optimizer step (gradient accumulation), and at which the gradient
    at the model's output shows what the loss was divided by. For a softmax cross-entropy
    the output gradient of each row is exactly c (softmax - onehot) / R, so the monitor reads
    the loss's denominator D exactly (measure/loss_divisor.py). D equal to the R rows one
    backward saw (a plain mean over the micro-batch) while K backward passes are summed into
    `.grad` means the loss was not divided: the step applies K times the gradient of the mean
    loss over the K micro-batches. It fires when the median D / R over those steps is below
    sqrt(K) (1 undivided, K divided). Another loss (MSE, label smoothing, a custom one) gives
    no reading, and the rule abstains.

    ## Why it matters
    Nothing in the loss curve says the steps are K times too large: the run behaves as if the
    learning rate were K times higher (a warm-up that seems too short, a divergence that a
    lower rate fixes, weights that grow), and the usual symptoms (`ratio-drift`,
    `gradient-trend`) point elsewhere.

    ## Evidence
    `step` (the first such measured step), `steps`, `backwards` (K, latest), `loss_divisor`
    (D / R, median), `applied_over_mean` (K / (D / R): the applied gradient over the mean
    loss's), `optimizer`.

    ## Thresholds
    `min_points` = 2 measured steps; undivided below sqrt(K).

    ## Fixes
    lr: divide each micro-batch's loss by the accumulation steps before `backward()`
    (`(loss / K).backward()`), or, equivalently, divide the learning rate by K.

    ## Example
    `tests/test_monitor_loop.py` and the corpus case `accum_undivided`: 8 micro-batches
    summed into `.grad` give an applied gradient 8.0x the mean loss's in plain PyTorch; the
    finding reads K = 8 and D / R = 1; the twin that divides by 8 reads D / R = 8 and is not
    reported, nor is a loop without accumulation.
    """
    steps = [
        s
        for s in watched(probe.history)
        if s.loop is not None and s.loop.backwards >= 2 and math.isfinite(s.loop.loss_divisor)
    ]
    if len(steps) < limits.min_points:
        return
    loop = steps[-1].loop
    assert loop is not None
    k = loop.backwards
    divisor = statistics.median(s.loop.loss_divisor for s in steps if s.loop is not None)
    if not divisor < math.sqrt(k):
        return
    yield Finding(
        id="accumulation-undivided",
        severity=Severity.ERROR,
        layers=(),
        message=(
            f"Gradients are accumulated over {k} backward passes per {loop.optimizer} step ({span(steps)}) "
            f"but each micro-batch's loss is a plain mean (divided by {divisor:.3g}, not {k}): every "
            f"update applies {k / divisor:.3g}x the gradient of the mean loss. Divide the loss by {k} "
            "before backward()."
        ),
        evidence={
            "step": steps[0].step,
            "steps": len(steps),
            "backwards": k,
            "loss_divisor": sig(divisor),
            "applied_over_mean": sig(k / divisor),
            "optimizer": loop.optimizer,
        },
        suggestions=(
            Suggestion(
                fix="lr",
                text=f"divide each micro-batch's loss by {k} before backward(): (loss / {k}).backward()",
            ),
        ),
    )
