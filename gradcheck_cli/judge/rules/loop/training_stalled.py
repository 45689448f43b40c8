"""training-stalled: no weight changes any more and the loss is flat (a collapsed learning rate)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import rule
from gradcheck_cli.judge.rules.loop.common import loss_drop, span, watched
from gradcheck_cli.records.findings import Finding, Severity, Suggestion
from gradcheck_cli.records.history import StepStats
from gradcheck_cli.records.stats import ProbeResult, TrainingHistory


@dataclass(frozen=True, slots=True)
class StalledLimits:
    min_points: float = 3
    """Consecutive measured steps (the latest) at which no optimized layer's weights changed."""
    max_loss_drop: float = 0.1
    """... while the median loss fell by less than this fraction over them (flat)."""
    lr_collapse: float = 1e-3
    """A learning rate below this fraction of the run's first is reported as collapsed."""


@rule(
    id="training-stalled",
    severity=Severity.ERROR,
    fixes=("scheduler", "lr"),
    limits=StalledLimits,
    needs_history=True,
)
def training_stalled(probe: ProbeResult, limits: StalledLimits) -> Iterator[Finding]:
    """Training has stopped: no weight changes any more, the loss is flat.

    ## What it detects
    From the monitor's loop record: the latest `min_points` or more measured steps at which
    the weights of every layer in the optimizer's groups were bitwise the same as at the
    previous measured step although the optimizer stepped in between (the updates are exactly
    0, or too small for the weights' dtype to add: float32 cannot add a relative change below
    6e-8; steps a GradScaler skipped applied nothing and are `grad-scaler-skips`'s), while the median loss fell by less
    than `max_loss_drop`. It names the scheduler and the first measured step at which the
    learning rate was below `lr_collapse` of the run's first (a step scheduler stepped per
    batch instead of per epoch takes StepLR(step_size=30, gamma=0.1) to 5e-44 in 1,300 steps).

    Under `--steps` (gradcheck's loop or the model file's `train_step`) the same verdict comes
    from the recorded update ratios: the trailing `min_points` or more steps whose update was
    exactly 0 in every layer, with a flat loss; steps are counted from 1 there, as in
    `training.divergence`.

    ## Why it matters
    Every per-step statistic looks healthy: the gradients are fine, only nothing is applied.
    The loss sits still (at ln(10) = 2.30 for ten classes) and a checkpoint resumed from there
    keeps doing nothing.

    ## Evidence
    `step` (the first measured step with no change), `last_step`, `points`, `lr` (the largest
    group learning rate then), `first_lr`, `lr_collapse_step` (null when the rate did not
    collapse), `scheduler` (its class, when the monitor was given it), `loss_drop`,
    `layers`, and the thresholds.

    ## Thresholds
    `min_points` = 3, `max_loss_drop` = 0.1 (batch-to-batch noise of an unchanged model stays below it), `lr_collapse` = 1e-3.

    ## Fixes
    scheduler: step the scheduler at the interval it was written for (StepLR per epoch), or
    give it a floor (CosineAnnealingLR eta_min).
    lr: raise the learning rate to where updates change the weights (1e-4 to 1e-2 for Adam).

    ## Example
    `tests/test_monitor_loop.py`: StepLR(step_size=2, gamma=0.01) stepped after every batch
    drives the rate below 1e-40; reported with the step at which it collapsed (checked against
    the scheduler's own get_last_lr()) and StepLR named; the same loop stepping it per epoch is not.
    """
    if probe.training is not None:
        yield from _steps_stalled(probe.training, limits)
    steps = watched(probe.history)
    run = _still(steps)
    if len(run) < limits.min_points:
        return
    drop = loss_drop(run)
    if drop is None or drop >= limits.max_loss_drop:
        return
    loop, first = run[0].loop, steps[0].loop
    assert loop is not None and first is not None
    lr, first_lr = max(loop.lrs, default=math.nan), max(first.lrs, default=math.nan)
    collapse = next(
        (s for s in steps if s.loop and max(s.loop.lrs, default=0) < limits.lr_collapse * first_lr), None
    )
    why = (
        f"the learning rate fell from {first_lr:.3g} to {lr:.3g}"
        + (f" ({loop.scheduler})" if loop.scheduler else "")
        + f" by step {collapse.step}"
        if collapse is not None
        else f"the learning rate is {lr:.3g}"
    )
    yield Finding(
        id="training-stalled",
        severity=Severity.ERROR,
        layers=tuple(_optimized(run[0])),
        message=(
            f"Training has stalled: no weight changed over {span(run)} and the loss is flat "
            f"({-drop:+.2%}); {why}, too small to change the weights."
        ),
        evidence={
            "step": run[0].step,
            "last_step": run[-1].step,
            "points": len(run),
            "lr": lr,
            "first_lr": first_lr,
            "lr_collapse_step": collapse.step if collapse is not None else None,
            "scheduler": loop.scheduler,
            "loss_drop": round(drop, 6),
            "layers": _optimized(run[0]),
            "max_loss_drop": limits.max_loss_drop,
            "lr_collapse": limits.lr_collapse,
        },
        suggestions=_suggestions(loop.scheduler, lr),
    )


def _suggestions(scheduler: str | None, lr: float) -> tuple[Suggestion, ...]:
    return (
        Suggestion(
            fix="scheduler",
            text=f"step {scheduler or 'the scheduler'} once per epoch, or give it a floor (eta_min)",
        ),
        Suggestion(fix="lr", text=f"raise the learning rate from {lr:.3g}"),
    )


def _steps_stalled(training: TrainingHistory, limits: StalledLimits) -> Iterator[Finding]:
    """--steps: the trailing steps whose update was exactly 0 in every layer, with a flat loss."""
    count = len(training.loss)
    zero = [all(values[i] == 0 for values in training.update_ratios.values()) for i in range(count)]
    start = count
    while start > 0 and zero[start - 1]:
        start -= 1
    losses = training.loss[start:]
    if not training.update_ratios or count - start < limits.min_points:
        return
    half = len(losses) // 2
    before, after = statistics.median(losses[:half]), statistics.median(losses[half:])
    if not math.isfinite(before) or (before - after) >= limits.max_loss_drop * abs(before):
        return
    lrs = training.lrs
    collapse = (
        next((i for i, lr in enumerate(lrs) if lr < limits.lr_collapse * lrs[0]), None) if lrs else None
    )
    lr = lrs[start] if start < len(lrs) else training.lr
    named = f" ({training.scheduler})" if training.scheduler else ""
    why = (
        f"the learning rate fell from {lrs[0]:.3g} to {lr:.3g}{named} by step {collapse + 1}"
        if collapse is not None
        else f"the learning rate is {lr:.3g}{named}"
    )
    yield Finding(
        id="training-stalled",
        severity=Severity.ERROR,
        layers=tuple(training.update_ratios),
        message=(
            f"Training has stalled: steps {start + 1}-{count} of --steps changed no weight (updates exactly "
            f"0) and the loss is flat at {after:.4g}; {why}, too small to change the weights."
        ),
        evidence={
            "step": start + 1,
            "last_step": count,
            "points": count - start,
            "lr": lr,
            "first_lr": lrs[0] if lrs else training.lr,
            "lr_collapse_step": None if collapse is None else collapse + 1,
            "scheduler": training.scheduler,
            "loop": training.loop,
            "layers": list(training.update_ratios),
            "max_loss_drop": limits.max_loss_drop,
            "lr_collapse": limits.lr_collapse,
        },
        suggestions=(
            Suggestion(fix="scheduler", text=f"step {training.scheduler or 'the scheduler'} once per epoch"),
            Suggestion(fix="lr", text=f"raise the learning rate from {lr:.3g}"),
        ),
    )


def _optimized(stats: StepStats) -> list[str]:
    loop = stats.loop
    return [n for n, layer in loop.layers.items() if layer.group is not None] if loop else []


def _still(steps: list[StepStats]) -> list[StepStats]:
    """The trailing measured steps at which no optimized layer's weights changed."""
    run: list[StepStats] = []
    for i in range(len(steps) - 1, 0, -1):
        loop, before = steps[i].loop, steps[i - 1].loop
        changes = (
            [layer.weight_changed for layer in loop.layers.values() if layer.group is not None]
            if loop
            else []
        )
        if not changes or any(c is None or c for c in changes):
            break
        if loop is not None and before is not None and loop.optimizer_steps == before.optimizer_steps:
            break  # no optimizer step in between (a GradScaler's skips): nothing was applied
        run.append(steps[i])
    return run[::-1]
