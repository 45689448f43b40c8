"""eval-mode-training: BatchNorm or dropout left in eval mode while the loop goes on training."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import rule
from gradcheck_cli.judge.rules.loop.common import watched
from gradcheck_cli.records.findings import Finding, Severity, Suggestion
from gradcheck_cli.records.history import StepStats
from gradcheck_cli.records.stats import ProbeResult


@dataclass(frozen=True, slots=True)
class EvalModeLimits:
    min_points: float = 2
    """Measured steps (the latest) the module must have stayed in eval mode with the optimizer
    stepping in between."""


@rule(
    id="eval-mode-training",
    severity=Severity.WARNING,
    fixes=("train-mode",),
    limits=EvalModeLimits,
    needs_history=True,
)
def eval_mode_training(probe: ProbeResult, limits: EvalModeLimits) -> Iterator[Finding]:
    """A BatchNorm or dropout module switched to eval mode mid-run and the loop trains on in it.

    ## What it detects
    From the monitor's loop record (`GradientMonitor(model, optimizer=opt)`, the Lightning and
    Trainer callbacks): BatchNorm modules with running statistics, and dropout modules, that
    were in train mode at an earlier measured step and have been in eval mode at each of the
    latest `min_points` measured steps while the optimizer kept stepping. The usual cause is a
    validation pass (`model.eval()`) with no `model.train()` after it. A module in eval mode
    from the first measured step on (BatchNorm frozen on purpose for fine-tuning) is not
    reported.

    ## Why it matters
    In eval mode BatchNorm normalises with its running statistics, frozen from then on, instead
    of the batch's; the layers before it keep changing, so their outputs drift away from the
    frozen statistics and nothing re-centres them. Dropout stops regularising. The loss still
    falls, more slowly, and no gradient is non-finite: no other finding shows the cause.

    ## Evidence
    `modules`, `step` (the first measured step of the current eval-mode stretch),
    `last_train_step` (the last measured step it was in train mode), `optimizer_steps` (optimizer
    steps taken in eval mode), `min_points`.

    ## Thresholds
    `min_points` = 2 measured steps in eval mode with at least one optimizer step between the
    first and the last (one measured step could be the validation pass itself).

    ## Fixes
    train-mode: call `model.train()` after the validation pass (or run validation on a copy).

    ## Example
    `tests/test_monitor_loop.py`: a BatchNorm MLP validated with `model.eval()` at step 4 and
    never switched back; plain PyTorch shows its running mean frozen from then on; the twin
    that calls `model.train()` is not reported, nor one with BatchNorm frozen from the start.
    """
    steps = watched(probe.history)
    if len(steps) < limits.min_points:
        return
    found = {name: stretch for name in steps[-1].loop.eval_modules if (stretch := _stretch(steps, name))}  # type: ignore[union-attr]
    found = {
        name: (first, last_train)
        for name, (first, last_train) in found.items()
        if len(steps) - first >= limits.min_points and _stepped(steps[first:])
    }
    if not found:
        return
    name, (first, last_train) = min(found.items(), key=lambda kv: kv[1][0])
    since = steps[first]
    taken = steps[-1].loop.optimizer_steps - since.loop.optimizer_steps  # type: ignore[union-attr]
    modules = list(found)
    yield Finding(
        id="eval-mode-training",
        severity=Severity.WARNING,
        layers=tuple(modules),
        message=(
            f"{', '.join(modules)} {'has' if len(modules) == 1 else 'have'} been in eval mode since step "
            f"{since.step} (in train mode at step {steps[last_train].step}) while the optimizer took "
            f"{taken} more steps: model.eval() without model.train() after it? In eval mode BatchNorm "
            "normalises with frozen running statistics and dropout is off."
        ),
        evidence={
            "modules": modules,
            "step": since.step,
            "last_train_step": steps[last_train].step,
            "optimizer_steps": taken,
            "min_points": int(limits.min_points),
        },
        suggestions=(
            Suggestion(fix="train-mode", text="call model.train() after the validation pass", where=name),
        ),
    )


def _stretch(steps: list[StepStats], name: str) -> tuple[int, int] | None:
    """(index of the first step of the trailing eval-mode stretch, index of the train-mode step
    before it), or None when the module was never seen in train mode before the stretch."""
    first = len(steps)
    while first > 0 and name in steps[first - 1].loop.eval_modules:  # type: ignore[union-attr]
        first -= 1
    return None if first == 0 else (first, first - 1)


def _stepped(steps: list[StepStats]) -> bool:
    counts = [s.loop.optimizer_steps for s in steps if s.loop is not None]
    return len(counts) >= 2 and counts[-1] > counts[0]
