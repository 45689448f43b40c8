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
    low: float = 1e-5
    """Warn when it is below this (10x under the usual 1e-4): the layer barely moves."""


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
    Under `--steps`, for each weight layer (Linear/Conv/recurrent/embedding) the median over
    the steps of ||W_after - W_before|| / ||W_before||, measured around the user's own
    optimizer (from `configure_optimizers()`, the checkpoint or `--optimizer`).

    ## Why it matters
    A step that changes a layer by about 1e-3 of its norm is the usual healthy size (the
    rule of thumb is 1e-4 to 1e-2). Ten times more and the layer is thrown around every step
    (the precursor of divergence and of dead units); ten times less and it does not learn in
    any number of steps this run can afford. It does not fire when the run diverged:
    `training-divergence` reports that.

    ## Evidence
    `too_large` and `too_small` (layer names), `median_ratio` per listed layer, `optimizer`,
    `lr`, `steps`, `suggested_lr` (the rate that brings the median of the listed layers to
    1e-3), `high_threshold`, `low_threshold`.

    ## Thresholds
    `high` = 0.1 and `low` = 1e-5: an order of magnitude outside the 1e-4..1e-2 band on each
    side, so only clear cases fire. On the models trained here (`benchmarks/trained_states.py`)
    healthy runs stay within 9e-4..7e-3; the CNN at a too-high rate moves 0.16 per step.

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
    medians = _medians(history, kinds)
    large = [n for n, r in medians.items() if r > limits.high]
    small = [n for n, r in medians.items() if 0 < r < limits.low]
    if not large and not small:
        return
    shown = large + small
    target = median([medians[n] for n in shown])
    suggested = sig(history.lr * 1e-3 / target) if target > 0 else None
    side = "too large" if large else "too small"
    yield Finding(
        id="update-ratio",
        severity=Severity.WARNING,
        layers=tuple(shown),
        message=(
            f"Each {history.optimizer} step (lr {history.lr:g}) changes {count(len(shown), 'weight layer')} "
            f"by {side} a fraction of its norm: {shown[0]} moves {medians[shown[0]]:.2g} per step (healthy 1e-4 to 1e-2)."
        ),
        evidence={
            "too_large": large,
            "too_small": small,
            "median_ratio": [sig(medians[n]) for n in shown],
            "optimizer": history.optimizer,
            "lr": history.lr,
            "steps": len(history.loss),
            "suggested_lr": suggested,
            "high_threshold": limits.high,
            "low_threshold": limits.low,
        },
        suggestions=_suggestions(history, suggested, bool(large)),
    )


def _medians(history: TrainingHistory, kinds: dict[str, str]) -> dict[str, float]:
    out = {}
    for name, values in history.update_ratios.items():
        finite = [v for v in values if math.isfinite(v) and v > 0]
        if kinds.get(name) == "weight" and finite:
            out[name] = median(finite)
    return out


def _suggestions(history: TrainingHistory, suggested: float | None, large: bool) -> tuple[Suggestion, ...]:
    rate = f"about {suggested:g}" if suggested else "a rate that moves weights ~1e-3 per step"
    out = [Suggestion(fix="lr", text=f"set the learning rate from {history.lr:g} to {rate}")]
    if large:
        out.append(Suggestion(fix="warmup", text="warm the learning rate up over the first steps (LinearLR)"))
        out.append(Suggestion(fix="clip", text="clip the gradient norm (clip_grad_norm_) to bound each step"))
    return tuple(out)
