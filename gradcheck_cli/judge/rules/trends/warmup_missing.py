"""warmup-missing: the loss blows up in the first steps at a learning rate that started at its peak."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import rule
from gradcheck_cli.judge.rules.profile import sig
from gradcheck_cli.records.findings import Finding, Severity, Suggestion
from gradcheck_cli.records.history import StepStats
from gradcheck_cli.records.stats import ProbeResult


@dataclass(frozen=True, slots=True)
class WarmupMissingLimits:
    factor: float = 10.0
    """A loss above this many times the first recorded loss is a blow-up (Megatron-LM's spike factor)."""
    early: float = 20
    """Only blow-ups within this many steps of the run's first recorded step count as 'early'."""
    ramp: float = 0.5
    """The rate had no warm-up when its value at the first step was at least this share of its
    value at the blow-up (a linear warm-up over 20 steps starts at 1/20 of it)."""


@rule(
    id="warmup-missing",
    severity=Severity.ERROR,
    fixes=("warmup", "lr"),
    limits=WarmupMissingLimits,
    needs_history=True,
)
def warmup_missing(probe: ProbeResult, limits: WarmupMissingLimits) -> Iterator[Finding]:
    """The loss blew up in the first steps of a run whose learning rate started at its peak.

    ## What it detects
    From the monitor's history with its loop record (`GradientMonitor(model, optimizer=opt)`,
    the callbacks, `gradcheck report`), a loss above `factor` times the first recorded loss
    (or non-finite) within `early` steps of the start of the run, while every param group's
    learning rate at the first step was already at least `ramp` of its rate at the blow-up:
    the schedule has no warm-up. `loss-spike` needs five losses to set its scale and cannot
    judge these first steps; a blow-up later in the run, or one under a rate that did ramp
    up, is not this finding. A run the monitor joined late (its first recorded step is not
    step 0) is not judged.

    ## Why it matters
    In the first steps an adaptive optimizer's second-moment estimate has seen one or two
    gradients, so each weight moves by about the full learning rate, and the early
    gradients, taken where the loss is steepest, are the largest of the run. A rate that
    is safe after a few hundred steps throws the weights out of the basin at step 1: the
    loss jumps, ReLUs die, and the run ends near chance, which later reads as "the model
    does not learn". A linear warm-up from a small rate to the same peak avoids it.

    ## Evidence
    `step` (the blow-up), `loss`, `first_loss`, `ratio`, `lrs_at_first_step`,
    `lrs_at_step` (each param group's rate), `scheduler`, `optimizer`, `factor`, `early`.

    ## Thresholds
    `factor` = 10 (Megatron-LM's), `early` = 20 steps, `ramp` = 0.5.

    ## Fixes
    warmup: ramp the learning rate up linearly over the first few hundred steps (or 5-10% of
    the run) to the same peak (`LambdaLR(opt, lambda s: min(1, (s + 1) / warmup))`).
    lr: or lower the peak learning rate.

    ## Example
    `tests/fixtures/corpus/no_warmup.py` (`tests/test_training_corpus.py`): Adam at 0.3 from
    step 0 on a small MLP; plain PyTorch records the loss at 13x its first value at step 1,
    and this finding names step 1 and the unchanged rate; the twin warmed up over 20 steps
    to the same peak is not reported.
    """
    steps = probe.history.steps if probe.history is not None else ()
    if not steps or steps[0].step != 0 or steps[0].loss is None or not steps[0].loss > 0:
        return
    first, scale = steps[0], steps[0].loss
    blown = next((s for s in steps[1:] if s.step <= limits.early and _blown(s, scale, limits)), None)
    if blown is None or first.loop is None or blown.loop is None:
        return
    before, at = first.loop.lrs, blown.loop.lrs
    if (
        not at
        or len(before) != len(at)
        or not all(b >= limits.ramp * a for b, a in zip(before, at, strict=True))
    ):
        return
    yield _finding(first, blown, limits)


def _blown(stats: StepStats, first: float, limits: WarmupMissingLimits) -> bool:
    loss = stats.loss
    return loss is not None and (not math.isfinite(loss) or loss > limits.factor * first)


def _finding(first: StepStats, blown: StepStats, limits: WarmupMissingLimits) -> Finding:
    assert first.loop is not None and blown.loop is not None and first.loss is not None
    loss = blown.loss if blown.loss is not None else math.nan
    ratio = loss / first.loss
    lrs = ", ".join(f"{lr:.3g}" for lr in blown.loop.lrs)
    scheduler = blown.loop.scheduler
    return Finding(
        id="warmup-missing",
        severity=Severity.ERROR,
        layers=(),
        message=(
            f"The loss blew up at step {blown.step}: {loss:.3g}, {ratio:.3g}x its first value "
            f"({first.loss:.3g}), with no learning-rate warm-up: the rate was already {lrs} at step 0"
            + (f" ({scheduler})" if scheduler else "")
            + "; warm it up over the first steps to the same peak."
        ),
        evidence={
            "step": blown.step,
            "loss": sig(loss),
            "first_loss": sig(first.loss),
            "ratio": sig(ratio),
            "lrs_at_first_step": [sig(v) for v in first.loop.lrs],
            "lrs_at_step": [sig(v) for v in blown.loop.lrs],
            "scheduler": scheduler,
            "optimizer": blown.loop.optimizer,
            "factor": limits.factor,
            "early": limits.early,
        },
        suggestions=(
            Suggestion(
                fix="warmup",
                text="ramp the learning rate up linearly over the first steps (LambdaLR(opt, lambda s: min(1, (s + 1) / warmup)))",
            ),
            Suggestion(fix="lr", text="or lower the peak learning rate"),
        ),
    )
