"""update-ratio: per-step update/weight ratios far outside 1e-4..1e-2 under --steps."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import TRAINING_STEPS, rule
from gradcheck_cli.judge.rules.profile import median, sig
from gradcheck_cli.judge.rules.training import diverged_in_training
from gradcheck_cli.records.findings import Finding, Severity, Suggestion
from gradcheck_cli.records.stats import ProbeResult, TrainingHistory
from gradcheck_cli.records.text import count


@dataclass(frozen=True, slots=True)
class UpdateRatioLimits:
    high: float = 0.1
    """Warn when a weight layer's median ||ΔW||/||W|| per step is above this (10x the usual 1e-2)."""
    step_high: float = 1.0
    """Warn when a single step (the first, or the worst) moves a weight layer by more than this
    fraction of its norm: the step replaced the layer rather than adjusting it."""
    low: float = 1e-5
    """Warn when the median is below this (10x under the usual 1e-4): the layer barely moves."""
    target: float = 1e-3
    """The per-step ratio the suggested learning rate aims for (the middle of 1e-4..1e-2)."""
    max_anneal: float = 1e4
    """Small steps are the schedule's end when it lowered the rate by at most this factor (the
    classic step schedule goes 0.1 -> 1e-4, 1e3); a rate 1e5x or more below its start is a
    collapse (a scheduler stepped per batch), still reported."""


@dataclass(frozen=True, slots=True)
class _Layer:
    median: float
    worst: float
    worst_step: int
    """1-based."""
    first: float


@rule(
    id="update-ratio",
    severity=Severity.WARNING,
    fixes=("lr", "warmup", "clip"),
    limits=UpdateRatioLimits,
    applies_when=TRAINING_STEPS,
)
def update_ratio(probe: ProbeResult, limits: UpdateRatioLimits) -> Iterator[Finding]:
    """Optimizer steps that move weight layers far too much, or hardly at all, for the optimizer in use.

    ## What it detects
    Under `--steps`, for each weight layer (Linear/Conv/recurrent/embedding) the ratio
    ||W_after - W_before|| / ||W_before|| at every step (in float64), measured around the
    user's own optimizer (from `configure_optimizers()`, the checkpoint or `--optimizer`),
    judged on its median over the steps, on its worst step and on its first step: a rate
    far too high shows on the first steps even when later steps settle.

    ## Why it matters
    A step that changes a layer by about 1e-3 of its norm is the usual healthy size (the
    rule of thumb is 1e-4 to 1e-2). Ten times more and the layer is thrown around every step
    (the precursor of divergence and of dead units); a single step above the layer's own norm
    replaced its weights; ten times less and it does not learn in any number of steps this
    run can afford. It does not fire when the run diverged: `training-divergence` reports that.
    Nor does "too small" fire when the optimizer's schedule annealed the rate (a torch
    scheduler's `initial_lr` in the checkpoint's param groups) and the step at the schedule's
    starting rate would be in range (updates scale linearly with the rate), by at most
    `max_anneal` = 1e4: that is the end of a schedule, said in an info finding.

    ## Evidence
    `too_large` and `too_small` (layer names), per listed layer `median_ratio`, `worst_ratio`,
    `worst_step` (1-based) and `first_ratio`; `optimizer`, `lr`, `steps`, `suggested_lr` (the
    rate at which the median step of the listed layers is `target` and no step is above `high`),
    `high_threshold`, `step_high_threshold`, `low_threshold`.

    ## Thresholds
    `high` = 0.1 on the median and `step_high` = 1 on any single step (first or worst);
    `low` = 1e-5 on the median: an order of magnitude outside the 1e-4..1e-2 band, so only
    clear cases fire. On the models trained here (`benchmarks/trained_states.py`) healthy
    runs stay within 9e-4..7e-3; the CNN at a too-high rate moves 0.16 per step; the MLP at
    5,000x its rate moves 11x its norm at step 1 and 0.04 at the median step.
    `target` = 1e-3 is the ratio the suggested learning rate aims for.

    ## Fixes
    lr: set the learning rate to the suggested value (updates scale linearly with it).
    warmup: warm the learning rate up when the first steps are the large ones.
    clip: clip the gradient norm so single steps stay bounded.

    ## Example
    `gradcheck analyze tests/fixtures/trained/relu_mlp.py --steps 5 --lr 2` fires (median
    ratios near 0.3); `--lr 0.05` does not.
    """
    history = probe.training
    if history is None or diverged_in_training(history):
        return
    kinds = {layer.name: layer.kind for layer in probe.layers}
    layers = _per_layer(history, kinds)
    large = [
        n for n, x in layers.items() if x.median > limits.high or max(x.worst, x.first) > limits.step_high
    ]
    small = [n for n, x in layers.items() if 0 < x.median < limits.low and n not in large]
    annealed = [n for n in small if _annealed(history, layers[n], limits)]
    small = [n for n in small if n not in annealed]
    if annealed and not large and not small:
        yield _annealed_finding(history, layers, annealed)
    if not large and not small:
        return
    shown = large + small
    suggested = _suggested(history.lr, [layers[n] for n in (large or small)], limits)
    yield Finding(
        id="update-ratio",
        severity=Severity.WARNING,
        layers=tuple(shown),
        message=f"{_message(history, layers, large, small, limits)} (healthy 1e-4 to 1e-2).",
        evidence={
            "too_large": large,
            "too_small": small,
            "median_ratio": [sig(layers[n].median) for n in shown],
            "worst_ratio": [sig(layers[n].worst) for n in shown],
            "worst_step": [layers[n].worst_step for n in shown],
            "first_ratio": [sig(layers[n].first) for n in shown],
            "optimizer": history.optimizer,
            "lr": history.lr,
            "steps": len(history.loss),
            "suggested_lr": suggested,
            "target": limits.target,
            "high_threshold": limits.high,
            "step_high_threshold": limits.step_high,
            "low_threshold": limits.low,
        },
        suggestions=_suggestions(history, suggested, bool(large)),
    )


def _annealed(history: TrainingHistory, layer: _Layer, limits: UpdateRatioLimits) -> bool:
    """The schedule lowered the rate, and at its starting rate the step would be in range:
    updates scale linearly with the learning rate, so the small steps are the schedule's end."""
    start = history.initial_lr
    if start is None or not start > history.lr > 0 or start / history.lr > limits.max_anneal:
        return False
    return layer.median * start / history.lr >= limits.low


def _annealed_finding(history: TrainingHistory, layers: dict[str, _Layer], annealed: list[str]) -> Finding:
    start = history.initial_lr
    assert start is not None
    name = annealed[0]
    return Finding(
        id="update-ratio",
        severity=Severity.INFO,
        layers=tuple(annealed),
        message=(
            f"{name} moves {layers[name].median:.2g} of its norm per step at lr {history.lr:g}: the "
            f"schedule has annealed the rate from {start:g} (at that rate about "
            f"{layers[name].median * start / history.lr:.2g} per step), the end of a schedule, not a "
            "problem; to train further, resume with a new schedule."
        ),
        evidence={
            "annealed": annealed,
            "median_ratio": [sig(layers[n].median) for n in annealed],
            "lr": history.lr,
            "initial_lr": start,
        },
    )


def _message(
    history: TrainingHistory,
    layers: dict[str, _Layer],
    large: list[str],
    small: list[str],
    limits: UpdateRatioLimits,
) -> str:
    head = f"Each {history.optimizer} step (lr {history.lr:g}) "
    if not large:
        name = small[0]
        return (
            head + f"changes {count(len(small), 'weight layer')} by too small a fraction of its norm: "
            f"{name} moves {layers[name].median:.2g} per step"
        )
    name = max(large, key=lambda n: layers[n].worst)
    x = layers[name]
    text = head + f"changes {count(len(large), 'weight layer')} by too large a fraction of its norm: {name} "
    if x.worst > limits.step_high:
        text += f"moved {x.worst:.2g}x its own norm at step {x.worst_step} (median step {x.median:.2g})"
    else:
        text += f"moves {x.median:.2g} per step"
    if small:
        text += f"; {count(len(small), 'other layer')} hardly {'moves' if len(small) == 1 else 'move'}"
    return text


def _per_layer(history: TrainingHistory, kinds: dict[str, str]) -> dict[str, _Layer]:
    out = {}
    for name, values in history.update_ratios.items():
        finite = [(i, v) for i, v in enumerate(values) if math.isfinite(v) and v > 0]
        if kinds.get(name) != "weight" or not finite:
            continue
        worst_i, worst = max(finite, key=lambda iv: iv[1])
        first = values[0] if math.isfinite(values[0]) else 0.0
        out[name] = _Layer(
            median=median([v for _, v in finite]), worst=worst, worst_step=worst_i + 1, first=first
        )
    return out


def _suggested(lr: float, listed: list[_Layer], limits: UpdateRatioLimits) -> float | None:
    """The rate at which the median step is `target` and no single step is above `high`."""
    factors = [limits.target / x.median for x in listed if x.median > 0]
    factors += [limits.high / x.worst for x in listed if x.worst > limits.high]
    return sig(lr * min(factors)) if factors else None


def _suggestions(history: TrainingHistory, suggested: float | None, large: bool) -> tuple[Suggestion, ...]:
    rate = f"about {suggested:g}" if suggested else "a rate that moves weights ~1e-3 per step"
    out = [Suggestion(fix="lr", text=f"set the learning rate from {history.lr:g} to {rate}")]
    if large:
        out.append(Suggestion(fix="warmup", text="warm the learning rate up over the first steps (LinearLR)"))
        out.append(Suggestion(fix="clip", text="clip the gradient norm (clip_grad_norm_) to bound each step"))
    return tuple(out)
