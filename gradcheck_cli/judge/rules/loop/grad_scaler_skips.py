"""grad-scaler-skips: a GradScaler that keeps skipping steps, or whose scale collapsed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import rule
from gradcheck_cli.judge.rules.loop.common import watched
from gradcheck_cli.records.findings import Finding, Severity, Suggestion
from gradcheck_cli.records.stats import ProbeResult


@dataclass(frozen=True, slots=True)
class ScalerSkipLimits:
    max_skip_fraction: float = 0.5
    """Fire when the scaler skipped more than this share of the steps over the window..."""
    min_skips: float = 5
    """... and at least this many steps (its normal start skips 2-4 while the scale settles)."""
    window: float = 20
    """Measured steps considered (the latest)."""
    min_scale: float = 1.0
    """A scale below this has collapsed (GradScaler starts at 65536): an error."""


@rule(
    id="grad-scaler-skips",
    severity=Severity.ERROR,
    fixes=("grad-scaler", "lr", "clip"),
    limits=ScalerSkipLimits,
    needs_history=True,
)
def grad_scaler_skips(probe: ProbeResult, limits: ScalerSkipLimits) -> Iterator[Finding]:
    """A GradScaler that keeps skipping optimizer steps, or whose loss scale collapsed.

    ## What it detects
    From the monitor's loop record (`GradientMonitor(model, optimizer=opt, scaler=scaler)`):
    the optimizer steps the scaler skipped because the scaled gradients held inf/NaN. The skips
    before the first optimizer step are the scale settling (from 65536, or any initial scale,
    one halving per skip until the scaled gradients fit float16: log2(initial / settled)
    skips, 6 from 2^24 on `tests/fixtures/corpus/fp16_overflow.py`): they are its normal
    behaviour and are neither counted here nor taken for non-finite events by
    `nonfinite-first-layer`, and the single-step rules do not judge a skipped step's
    gradients (the scaler throws them away). A skip after the first step is counted; a scale
    that collapses is an error whether or not any step was ever taken. It fires as a warning when, over the last `window` measured
    steps, more than `max_skip_fraction` of the steps (and at least `min_skips`) were
    skipped, and as an error when the scale fell below `min_scale`: then the gradients
    overflow even unscaled, or the loss itself is NaN/inf.

    ## Why it matters
    Each skipped step is a step not taken: a run whose scaler skips most steps barely trains,
    and a collapsed scale means float16 cannot hold the values at all.

    ## Evidence
    `step` (the first measured step of the window), `last_step`, `skipped` and `calls`
    (skipped steps and steps in the window), `settling_skips` (of those, before the first
    optimizer step), `loss_scale` (latest), `scale_collapsed`, and
    the thresholds.

    ## Thresholds
    `max_skip_fraction` = 0.5, `min_skips` = 5, `window` = 20 measured steps, `min_scale` = 1.

    ## Fixes
    grad-scaler: look for the operation that overflows float16 (run it in float32 under
    `torch.autocast(enabled=False)`), or train in bfloat16.
    lr: lower the learning rate if the weights grew until their products overflow.
    clip: clip the unscaled gradient norm (after `scaler.unscale_(optimizer)`).

    ## Example
    `tests/test_monitor_loop.py`: a float16-scaled loop whose first steps overflow at the
    initial scale (2^24: 6 settling skips, counted in plain PyTorch from the scaler's scale) is
    not reported (and `nonfinite-first-layer` names no step); a loss that is
    inf at every step makes the scale collapse and is reported.
    """
    steps = watched(probe.history)
    scaled = [s for s in steps if s.loop is not None and s.loop.loss_scale is not None]
    if len(scaled) < 2:
        return
    recent = scaled[-int(limits.window) :]
    first, last = recent[0].loop, recent[-1].loop
    assert first is not None and last is not None and last.loss_scale is not None
    partial = len(recent) < len(scaled)
    skipped = last.skipped_steps - (first.skipped_steps if partial else 0)
    settling = last.settling_skips - (first.settling_skips if partial else 0)
    calls = last.calls - (first.calls if partial else 0) + 1
    collapsed = last.loss_scale < limits.min_scale
    counted = skipped - settling
    persistent = counted >= limits.min_skips and counted > limits.max_skip_fraction * (calls - settling)
    if not collapsed and not persistent:
        return
    severity = Severity.ERROR if collapsed else Severity.WARNING
    yield Finding(
        id="grad-scaler-skips",
        severity=severity,
        layers=(),
        message=(
            f"The GradScaler skipped {skipped} of {calls} steps up to step {recent[-1].step}"
            + (f" and its scale collapsed to {last.loss_scale:.3g}" if collapsed else "")
            + ": the float16 gradients overflow at almost every step, so the model barely trains."
        ),
        evidence={
            "step": recent[0].step,
            "last_step": recent[-1].step,
            "skipped": skipped,
            "calls": calls,
            "settling_skips": settling,
            "loss_scale": last.loss_scale,
            "scale_collapsed": collapsed,
            "max_skip_fraction": limits.max_skip_fraction,
            "min_skips": limits.min_skips,
            "min_scale": limits.min_scale,
        },
        suggestions=(
            Suggestion(
                fix="grad-scaler", text="run the overflowing operation in float32, or train in bfloat16"
            ),
            Suggestion(fix="lr", text="lower the learning rate"),
        ),
    )
