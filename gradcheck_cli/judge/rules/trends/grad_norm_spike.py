"""grad-norm-spike: the total gradient norm jumps far out of its rolling window (a ZClip-style z-score)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import rule
from gradcheck_cli.judge.rules.profile import sig
from gradcheck_cli.judge.rules.trends.loss_spike import LossSpikeLimits, _spikes
from gradcheck_cli.judge.rules.trends.steps import Spike, StepSeries, first_rise, log_spikes, step_series
from gradcheck_cli.records.findings import Finding, Severity, Suggestion
from gradcheck_cli.records.stats import ProbeResult


@dataclass(frozen=True, slots=True)
class GradNormSpikeLimits:
    z: float = 4.0
    """Standard deviations of log10(total gradient norm) above the rolling window's mean."""
    factor: float = 5.0
    """... and at least this many times the window's median."""
    window: float = 20
    """The rolling window, in recorded steps (finite, positive norms only; spikes left out)."""
    min_points: float = 10
    """Steps the window needs before a z-score is trusted."""
    std_floor: float = 0.05
    """The window's standard deviation is taken as at least this many orders of magnitude."""
    rise_factor: float = 3.0
    """A layer 'rose' when its gradient norm reached this many times its median before."""
    judged: float = 200
    """The recorded steps judged (a monitor judges at every measured step)."""


@rule(
    id="grad-norm-spike",
    severity=Severity.WARNING,
    fixes=("clip", "lr", "warmup"),
    limits=GradNormSpikeLimits,
    needs_history=True,
)
def grad_norm_spike(probe: ProbeResult, limits: GradNormSpikeLimits) -> Iterator[Finding]:
    """The whole model's gradient norm jumped far outside its recent range, and the layer that rose first.

    ## What it detects
    Over a training run's recorded steps (`--steps`, GradientMonitor and its callbacks,
    `gradcheck report run.jsonl`), the z-score of log10(total gradient norm) against a rolling
    window of the previous `window` steps, as ZClip does for adaptive clipping: a step is a
    spike when it is `z` standard deviations above the window's mean and `factor` times its
    median. The total norm is summed in float64 from the layers' norms. It names the layer
    whose own gradient norm rose first (to `rise_factor` times its median before) and, when
    the loss spiked after it (Megatron-LM's 10x check, as `loss-spike`), how many steps of
    warning the gradient gave.

    ## Why it matters
    A gradient-norm spike is the step at which the optimizer is about to take a step far larger
    than the ones before: the precursor of a loss spike or a divergence, often several steps
    ahead. Clipping at the window's scale stops it; the first layer says where it starts.

    ## Evidence
    `step` (the first spike), `grad_norm`, `window_median`, `z`, `ratio`, `spikes` (how many
    steps spiked) and `spike_steps` (the first ten), `first_layer`, `first_layer_step`,
    `first_layer_rise`, `loss_spike_step` and `lead_steps` (when the loss spiked after it),
    `suggested_max_norm` (the window median), `source`, and the thresholds.
    When the window never held `min_points` finite steps the rule abstains (no finding).

    ## Thresholds
    `z` = 4 and `factor` = 5 over a `window` of 20 steps with at least `min_points` = 10, over
    the last `judged` = 200 recorded steps, the
    deviation floored at `std_floor` = 0.05 orders: healthy runs move their gradient norm by
    well under 2x within 20 steps (a log10 spread of ~0.1), so a 5x jump four deviations out is
    not noise. ZClip clips at z = 2.5; an alarm needs to be rarer than a clip.

    ## Fixes
    clip: clip the gradient norm at the window median (`suggested_max_norm`).
    lr: lower the learning rate if spikes keep coming.
    warmup: warm the learning rate up when the spikes are early.

    ## Example
    `tests/test_spikes.py`: a small MLP whose learning rate jumps 200x at step 30 spikes its
    gradient norm before its loss; the constant-rate twin is not reported.
    """
    series = step_series(probe, int(limits.judged))
    if series is None:
        return
    spikes = log_spikes(
        series.total, int(limits.window), int(limits.min_points), limits.z, limits.factor, limits.std_floor
    )
    if spikes:
        yield _finding(series, spikes, limits)


def _finding(series: StepSeries, spikes: list[Spike], limits: GradNormSpikeLimits) -> Finding:
    first = spikes[0]
    step, norm = series.steps[first.index], series.total[first.index]
    median = norm / first.factor
    rise = first_rise(series, first.index, int(limits.window), int(limits.window), limits.rise_factor)
    loss_spikes = [
        i for i, _ in _spikes(series, LossSpikeLimits()) if i >= (rise.index if rise else first.index)
    ]
    loss_step = series.steps[loss_spikes[0]] if loss_spikes else None
    lead = loss_step - series.steps[rise.index if rise else first.index] if loss_step is not None else None
    text = f"The gradient norm spiked at step {step}: {norm:.3g}, {first.factor:.3g}x the median of the steps before"
    if rise:
        text += f"; {rise.layer} rose first ({rise.factor:.3g}x at step {series.steps[rise.index]})"
    if loss_step is not None:
        text += f"; the loss spiked {lead} {'step' if lead == 1 else 'steps'} later (step {loss_step})"
    return Finding(
        id="grad-norm-spike",
        severity=Severity.WARNING,
        layers=(rise.layer,) if rise else (),
        message=text + ".",
        evidence={
            "step": step,
            "grad_norm": sig(norm),
            "window_median": sig(median),
            "z": round(first.z, 2) if math.isfinite(first.z) else None,
            "ratio": sig(first.factor),
            "spikes": len(spikes),
            "spike_steps": [series.steps[s.index] for s in spikes[:10]],
            "first_layer": rise.layer if rise else None,
            "first_layer_step": series.steps[rise.index] if rise else None,
            "first_layer_rise": sig(rise.factor) if rise else None,
            "loss_spike_step": loss_step,
            "lead_steps": lead,
            "suggested_max_norm": sig(median),
            "source": series.source,
            "z_threshold": limits.z,
            "factor": limits.factor,
            "window": int(limits.window),
            "min_points": int(limits.min_points),
        },
        suggestions=(
            Suggestion(
                fix="clip",
                text=f"clip the gradient norm at about {sig(median):g} (the median before the spike): "
                f"torch.nn.utils.clip_grad_norm_(model.parameters(), {sig(median):g})",
            ),
            Suggestion(fix="lr", text="lower the learning rate if the spikes keep coming"),
            Suggestion(fix="warmup", text="warm the learning rate up when the spikes come early"),
        ),
    )
