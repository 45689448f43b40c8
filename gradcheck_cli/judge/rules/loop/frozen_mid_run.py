"""frozen-mid-run: a layer that was learning stops changing while the rest of the model trains."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import rule
from gradcheck_cli.records.findings import Finding, Severity, Suggestion
from gradcheck_cli.records.history import StepStats
from gradcheck_cli.records.stats import ProbeResult


@dataclass(frozen=True, slots=True)
class FrozenMidRunLimits:
    min_points: float = 2
    """Measured steps (the latest) the layer must have stayed frozen or unchanged."""


@rule(
    id="frozen-mid-run",
    severity=Severity.WARNING,
    fixes=("optimizer",),
    limits=FrozenMidRunLimits,
    needs_history=True,
)
def frozen_mid_run(probe: ProbeResult, limits: FrozenMidRunLimits) -> Iterator[Finding]:
    """A layer that was learning stopped during the run while the rest of the model still trains.

    ## What it detects
    Either a layer that was trainable at earlier measured steps and has had no trainable
    parameter (`requires_grad=False`) for the latest `min_points` measured steps, or, from
    the monitor's loop record, a layer whose weights changed at earlier measured steps and
    have been bitwise the same for the latest `min_points` while other layers still change
    (its group's learning rate set to 0, its parameters dropped from the optimizer). A stall
    of the whole model is `training-stalled` instead.

    ## Why it matters
    A freeze meant for a few steps (a warm-up of the head, a debugging line) that is never
    undone leaves part of the model at a half-trained state; the loss keeps falling, slower,
    and nothing says why.

    ## Evidence
    `layers`, `step` (the first measured step it was seen frozen or unchanged), `last_trained_step`
    (the last measured step at which it was trainable or changed), `how` (`requires_grad` or
    `not-updated`), `lr` (its group's learning rate, when known).

    ## Thresholds
    `min_points` = 2 measured steps.

    ## Fixes
    optimizer: if the freeze was not meant to last, set `requires_grad=True` again (and keep the
    parameters in the optimizer with a non-zero learning rate).

    ## Example
    `tests/test_monitor_loop.py`: an MLP whose first layer gets `requires_grad_(False)` at
    step 6 of 14 is reported at the first measured step after it; a run frozen from the start
    is not.
    """
    if probe.history is None or len(probe.history.steps) < limits.min_points + 1:
        return
    steps = probe.history.steps
    n = int(limits.min_points)
    found = _requires_grad_off(steps, n) or _not_updated(steps, n)
    if found is None:
        return
    how, layers, since, last = found
    lr = _lr_of(steps[-1], layers[0])
    yield Finding(
        id="frozen-mid-run",
        severity=Severity.WARNING,
        layers=tuple(layers),
        message=(
            f"{', '.join(layers)} stopped training at step {since} (trained until step {last}): "
            + ("requires_grad was turned off" if how == "requires_grad" else "its weights no longer change")
            + (f", its learning rate is {lr:.3g}" if lr is not None else "")
            + "; the rest of the model still trains."
        ),
        evidence={"layers": layers, "step": since, "last_trained_step": last, "how": how, "lr": lr},
        suggestions=(
            Suggestion(fix="optimizer", text=f"unfreeze {layers[0]} if the freeze was not meant to last"),
        ),
    )


def _requires_grad_off(steps: tuple[StepStats, ...], n: int) -> tuple[str, list[str], int, int] | None:
    recent, earlier = steps[-n:], steps[:-n]
    frozen = set.intersection(*(set(s.frozen) for s in recent))
    if not frozen:
        return None
    trained_before = {p.name: s.step for s in earlier for p in s.layers if p.name in frozen}
    layers = sorted(trained_before, key=lambda name: trained_before[name])
    if not layers or not recent[-1].layers:
        return None
    since = next(s.step for s in steps if s.step > trained_before[layers[0]] and layers[0] in s.frozen)
    return "requires_grad", layers, since, trained_before[layers[0]]


def _not_updated(steps: tuple[StepStats, ...], n: int) -> tuple[str, list[str], int, int] | None:
    watched = [s for s in steps if s.loop is not None]
    if len(watched) < n + 1:
        return None
    recent = watched[-n:]
    still: dict[str, int] = {}
    moving = False
    for name in recent[-1].loop.layers if recent[-1].loop else ():
        changes = [
            s.loop.layers[name].weight_changed if s.loop and name in s.loop.layers else None for s in watched
        ]
        if all(c is True for c in changes[-n:]):
            moving = True
        last = max((i for i, c in enumerate(changes) if c), default=None)
        if last is not None and all(c is False for c in changes[last + 1 :]) and len(changes) - 1 - last >= n:
            still[name] = last
    if not still or not moving:
        return None
    layers = sorted(still, key=lambda name: still[name])
    last = still[layers[0]]
    return "not-updated", layers, watched[last + 1].step, watched[last].step


def _lr_of(stats: StepStats, layer: str) -> float | None:
    loop = stats.loop
    if loop is None or layer not in loop.layers:
        return None
    group = loop.layers[layer].group
    return loop.lrs[group] if group is not None and group < len(loop.lrs) else None
