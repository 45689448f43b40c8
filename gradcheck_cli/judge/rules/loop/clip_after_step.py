"""clip-after-step: the gradients are clipped after optimizer.step(), so the update was not clipped."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import rule
from gradcheck_cli.judge.rules.loop.common import span, watched
from gradcheck_cli.judge.rules.profile import sig
from gradcheck_cli.records.findings import Finding, Severity, Suggestion
from gradcheck_cli.records.history import StepStats
from gradcheck_cli.records.stats import ProbeResult


@dataclass(frozen=True, slots=True)
class ClipAfterStepLimits:
    shrink: float = 0.99
    """The gradient read after the step below this share of the one applied: rescaled after it."""
    min_points: float = 2
    """Measured steps at which that happened."""


@rule(
    id="clip-after-step",
    severity=Severity.ERROR,
    fixes=("clip",),
    limits=ClipAfterStepLimits,
    needs_history=True,
)
def clip_after_step(probe: ProbeResult, limits: ClipAfterStepLimits) -> Iterator[Finding]:
    """The gradients are rescaled (clipped) after `optimizer.step()`: the update applied was never clipped.

    ## What it detects
    From the monitor's loop record: on measured steps a step pre-hook takes the norm of the
    gradients `optimizer.step()` applies, and the monitor reads the norm again after the step.
    Nothing but the user's code changes `.grad` in between; when it shrank (below `shrink` of
    the applied norm, not to zero: `zero_grad()` after the step is fine) at `min_points`
    measured steps, the loop clips after the update (`clip_grad_norm_` after `step()`).

    ## Why it matters
    The clip is there to bound a step; called after the step it bounds nothing, and the run
    takes every large gradient in full, while the code reads as if it were clipped. The
    gradient norms a logger records after the clip look tame as well.

    ## Evidence
    `step` (the first such measured step), `steps`, `applied_norm` and `norm_after` (the latest),
    `ratio` (after over applied), `shrink`.

    ## Thresholds
    `shrink` = 0.99, `min_points` = 2 measured steps.

    ## Fixes
    clip: call `torch.nn.utils.clip_grad_norm_` after `backward()` and before `optimizer.step()`
    (under a GradScaler, after `scaler.unscale_(optimizer)`).

    ## Example
    `tests/test_monitor_loop.py`: a loop that calls clip_grad_norm_(0.1) after step() is
    reported with the applied norm equal to the unclipped norm computed in plain PyTorch; the
    same loop clipping before the step is not.
    """
    late = [s for s in watched(probe.history) if _shrunk(s, limits.shrink)]
    if len(late) < limits.min_points:
        return
    loop = late[-1].loop
    assert loop is not None
    applied, after = loop.grad_norm_at_step, loop.grad_norm_after_step
    yield Finding(
        id="clip-after-step",
        severity=Severity.ERROR,
        layers=(),
        message=(
            f"The gradients are clipped after {loop.optimizer}.step() ({span(late)}): at step {late[-1].step} "
            f"the update applied a gradient of norm {applied:.3g}, then it was rescaled to {after:.3g}. "
            "Clip before optimizer.step()."
        ),
        evidence={
            "step": late[0].step,
            "steps": len(late),
            "applied_norm": sig(applied),
            "norm_after": sig(after),
            "ratio": sig(after / applied),
            "shrink": limits.shrink,
        },
        suggestions=(
            Suggestion(fix="clip", text="call clip_grad_norm_ between backward() and optimizer.step()"),
        ),
    )


def _shrunk(stats: StepStats, shrink: float) -> bool:
    loop = stats.loop
    if loop is None:
        return False
    applied, after = loop.grad_norm_at_step, loop.grad_norm_after_step
    return math.isfinite(applied) and math.isfinite(after) and 0 < after < shrink * applied
