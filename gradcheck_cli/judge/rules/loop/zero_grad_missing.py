"""zero-grad-missing: `.grad` still holds earlier steps' gradients when the next backward adds to it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import rule
from gradcheck_cli.judge.rules.loop.common import span, watched
from gradcheck_cli.records.findings import Finding, Severity, Suggestion
from gradcheck_cli.records.history import StepStats
from gradcheck_cli.records.stats import ProbeResult


@dataclass(frozen=True, slots=True)
class ZeroGradLimits:
    min_points: float = 2
    """Measured steps, each after an optimizer step, at which no optimized layer's `.grad` was zeroed."""


@rule(
    id="zero-grad-missing",
    severity=Severity.ERROR,
    fixes=("zero-grad",),
    limits=ZeroGradLimits,
    needs_history=True,
)
def zero_grad_missing(probe: ProbeResult, limits: ZeroGradLimits) -> Iterator[Finding]:
    """Gradients pile up across optimizer steps: `optimizer.zero_grad()` is not called.

    ## What it detects
    From the monitor's loop record: at measured steps that follow an optimizer step (or a
    GradScaler's skipped step), a hook on each parameter sees the `.grad` that this step's
    backward adds to. When, at `min_points` such steps, every layer in the optimizer's groups
    that got a gradient found a non-zero `.grad` left from before, zero_grad is missing. The
    evidence gives the left-over gradient as a multiple of the step's own (`grad_carry`).
    Backward passes with no optimizer step between them (gradient accumulation) are not judged.

    ## Why it matters
    Each step then applies the sum of every gradient so far: the update grows step after step
    (75-200x one step's own gradient after a few hundred steps) while the loss stays flat or
    oscillates. Seen from outside it looks like exploding gradients or saturated units.

    ## Evidence
    `step` (the first such measured step), `steps` (how many), `layers`, `layer` and
    `grad_carry` (the layer with the largest left-over multiple at the latest such step),
    `carries` (that layer's multiple at each such step).

    ## Thresholds
    `min_points` = 2 measured steps.

    ## Fixes
    zero-grad: call `optimizer.zero_grad()` (or `model.zero_grad()`) once per optimizer step,
    before the backward passes that feed it.

    ## Example
    `tests/test_monitor_loop.py`: a loop without zero_grad is reported; the left-over multiple
    matches `(grad_before_backward).norm() / (own gradient).norm()` computed in plain PyTorch;
    the same loop with zero_grad, and with 4-step gradient accumulation, is not.
    """
    piled = [s for s in watched(probe.history) if _piled(s)]
    if len(piled) < limits.min_points:
        return
    loop = piled[-1].loop
    assert loop is not None
    carries = {n: layer.grad_carry for n, layer in loop.layers.items() if layer.grad_zeroed is False}
    worst = max(carries, key=lambda n: carries[n])
    series = [s.loop.layers[worst].grad_carry for s in piled if s.loop and worst in s.loop.layers]
    yield Finding(
        id="zero-grad-missing",
        severity=Severity.ERROR,
        layers=tuple(carries),
        message=(
            f"`.grad` is not zeroed between optimizer steps ({span(piled)}): at step {piled[-1].step} "
            f"the gradient {worst} already held was {carries[worst]:.3g}x the step's own, and the "
            f"{loop.optimizer} step applied the sum."
        ),
        evidence={
            "step": piled[0].step,
            "steps": len(piled),
            "layers": list(carries),
            "layer": worst,
            "grad_carry": carries[worst],
            "carries": series,
        },
        suggestions=(Suggestion(fix="zero-grad", text="call optimizer.zero_grad() once per optimizer step"),),
    )


def _piled(stats: StepStats) -> bool:
    loop = stats.loop
    if loop is None or not loop.stepped:
        return False
    judged = [layer.grad_zeroed for layer in loop.layers.values() if layer.group is not None]
    known = [z for z in judged if z is not None]
    return bool(known) and not any(known)
