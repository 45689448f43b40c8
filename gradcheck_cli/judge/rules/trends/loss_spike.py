"""loss-spike: the loss jumps above 10x the worst loss so far (Megatron-LM's spiky-loss check)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import rule
from gradcheck_cli.judge.rules.profile import sig
from gradcheck_cli.judge.rules.trends.steps import StepSeries, first_rise, step_series
from gradcheck_cli.records.findings import Finding, Severity, Suggestion
from gradcheck_cli.records.stats import ProbeResult


@dataclass(frozen=True, slots=True)
class LossSpikeLimits:
    factor: float = 10.0
    """A loss above this many times the worst finite loss so far is a spike."""
    min_steps: float = 5
    """Finite losses needed before the first one judged (the early losses set the scale)."""
    rise_factor: float = 3.0
    """A layer 'rose' when its gradient norm reached this many times its median before."""
    lookback: float = 20
    """Steps before the spike searched for the layer whose gradient rose first."""
    window: float = 500
    """The recorded steps judged (the worst loss 'so far' is over these)."""


@rule(
    id="loss-spike",
    severity=Severity.ERROR,
    fixes=("lr", "clip", "warmup"),
    limits=LossSpikeLimits,
    needs_history=True,
)
def loss_spike(probe: ProbeResult, limits: LossSpikeLimits) -> Iterator[Finding]:
    """The loss jumped above ten times the worst loss seen so far, and the layer whose gradient rose first.

    ## What it detects
    Over a training run's recorded steps (`--steps`, GradientMonitor and its callbacks,
    `gradcheck report run.jsonl`), the first step whose loss is above `factor` times the largest
    finite loss recorded before it, as Megatron-LM's spiky-loss check does. It then looks back
    up to `lookback` steps for the layer whose parameter-gradient norm first reached
    `rise_factor` times its own median over the steps before, and says how many steps before
    the loss that was. A non-finite loss is not a spike (`training-divergence` and
    `nonfinite-first-layer` report it).

    ## Why it matters
    A healthy run's loss falls: its worst value is usually the first. A loss ten times above
    anything seen is the optimizer overshooting (a learning rate too high for the current
    curvature, attention logits grown until softmax saturates, a bad batch); runs often never
    recover. The layer whose gradient rose first is where to clip or normalise, and the lead
    time is how much warning a gradient-norm alarm would have given.

    ## Evidence
    `step` (the spike), `loss`, `worst_before` (the largest loss before it), `ratio`,
    `recovered` (the last loss is back under `worst_before`), `last_loss`, `first_layer`,
    `first_layer_step`, `lead_steps` (spike step minus first_layer_step), `first_layer_rise`,
    `spikes` (how many steps spiked), `source` (`--steps` or `monitor`), `factor`.

    ## Thresholds
    `factor` = 10 (Megatron-LM's value), after `min_steps` = 5 finite losses, over the last
    `window` = 500 recorded steps (a monitor judges at every measured step); the error
    severity is for a run that did not recover, a warning otherwise. `rise_factor` = 3 and
    `lookback` = 20 steps locate the first layer.

    ## Fixes
    lr: lower the peak learning rate.
    clip: clip the gradient norm at the scale of the steps before the spike.
    warmup: warm the learning rate up so early large gradients cannot take large steps.

    ## Example
    `tests/test_spikes.py` trains a small MLP whose learning rate jumps 200x at step 30: the
    loss spikes a few steps later, named with the layer whose gradient rose first; the same
    run at a constant rate is not reported.
    """
    series = step_series(probe, int(limits.window))
    if series is None:
        return
    spikes = _spikes(series, limits)
    if not spikes:
        return
    yield _finding(series, spikes, limits)


def _spikes(series: StepSeries, limits: LossSpikeLimits) -> list[tuple[int, float]]:
    """(position, worst before) of every spiking step."""
    worst, seen, out = -math.inf, 0, []
    for i, loss in enumerate(series.loss):
        if not math.isfinite(loss):
            continue
        if seen >= limits.min_steps and worst > 0 and loss > limits.factor * worst:
            out.append((i, worst))
        worst, seen = max(worst, loss), seen + 1
    return out


def _finding(series: StepSeries, spikes: list[tuple[int, float]], limits: LossSpikeLimits) -> Finding:
    at, worst = spikes[0]
    loss, step = series.loss[at], series.steps[at]
    finite = [v for v in series.loss if math.isfinite(v)]
    recovered = bool(finite) and finite[-1] <= worst
    rise = first_rise(series, at, int(limits.lookback), int(limits.lookback), limits.rise_factor)
    lead = step - series.steps[rise.index] if rise else None
    where = (
        f"; the gradient of {rise.layer} rose first, {rise.factor:.3g}x at step {series.steps[rise.index]} "
        f"({lead} {'step' if lead == 1 else 'steps'} before the loss)"
        if rise
        else ""
    )
    return Finding(
        id="loss-spike",
        severity=Severity.WARNING if recovered else Severity.ERROR,
        layers=(rise.layer,) if rise else (),
        message=(
            f"The loss spiked at step {step}: {loss:.3g}, {loss / worst:.3g}x the worst loss before it "
            f"({worst:.3g}){where}; {'it recovered' if recovered else 'it did not recover'}."
        ),
        evidence={
            "step": step,
            "loss": sig(loss),
            "worst_before": sig(worst),
            "ratio": sig(loss / worst),
            "recovered": recovered,
            "last_loss": sig(finite[-1]) if finite else None,
            "first_layer": rise.layer if rise else None,
            "first_layer_step": series.steps[rise.index] if rise else None,
            "lead_steps": lead,
            "first_layer_rise": sig(rise.factor) if rise else None,
            "spikes": len(spikes),
            "source": series.source,
            "factor": limits.factor,
        },
        suggestions=(
            Suggestion(fix="lr", text="lower the peak learning rate (the step before the spike overshot)"),
            Suggestion(
                fix="clip",
                text="clip the gradient norm (torch.nn.utils.clip_grad_norm_) at the scale of the steps before the spike",
            ),
            Suggestion(
                fix="warmup", text="warm the learning rate up, and check the schedule around the spike"
            ),
        ),
    )
