"""training-divergence: the loss, an output, a gradient or a weight went non-finite during --steps."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import TRAINING_STEPS, rule
from gradcheck_cli.judge.rules.profile import layer_where, median, sig
from gradcheck_cli.judge.rules.training import diverged_in_training
from gradcheck_cli.records.findings import Evidence, Finding, LayerStatus, Severity, Suggestion
from gradcheck_cli.records.stats import Divergence, ProbeResult, TrainingHistory


@dataclass(frozen=True, slots=True)
class DivergenceLimits:
    target_update_ratio: float = 1e-3
    """The per-step update/weight ratio the suggested learning rate aims for (middle of 1e-4..1e-2)."""
    max_steps_for_clip: float = 5
    """The clip max_norm is the median total gradient norm over at most this many first steps."""


@rule(
    id="training-divergence",
    severity=Severity.ERROR,
    fixes=("lr", "clip", "warmup"),
    limits=DivergenceLimits,
    applies_when=TRAINING_STEPS,
)
def training_divergence(probe: ProbeResult, limits: DivergenceLimits) -> Iterator[Finding]:
    """Training steps drove the loss, an output, a gradient or a weight to NaN/inf.

    ## What it detects
    Under `--steps K`, the first step at which the loss, the output of a layer, a layer's
    parameter gradient, or (after the update) a layer's weights stopped being finite, when the
    first forward/backward on the loaded weights was finite: the optimizer made it diverge.
    Training stops at that step and the weights go back to their state before `--steps`,
    so the other findings describe the model as loaded, not the wreck.

    ## Why it matters
    A diverged run is lost from that step on, and the cause is the step size, not the model's
    arithmetic: adding epsilons or a float16 grad-scaler does not help.

    ## Evidence
    `step` (1-based, of `steps_planned`), `layer` (the first layer that blew up: the first
    whose output went non-finite in forward order, else the first gradient in backward order,
    else the first weight), `forward_layer`, `gradient_layers`, `weight_layers`, `loss_first`,
    `loss_before` (the last finite loss), `update_ratio_before` (the largest per-layer
    ||ΔW||/||W|| at the step before) and `update_ratio_first` (at step 1) with their layers,
    `update_ratio_max` with `update_ratio_max_layer` and `update_ratio_max_step` (the largest
    change over every recorded step, in float64: a float32 norm of a change above ~1.8e19
    overflows and would drop the layer that blew up most), `grad_norm_before` and
    `grad_norm_first` (total), `lr`, `optimizer`, and the measured
    suggestions `suggested_lr` and `suggested_max_norm`, with `target_update_ratio`.

    ## Thresholds
    Any non-finite value after step 1 (or an overflowing update at step 1). The suggested
    learning rate scales the current one so that the largest update/weight ratio at step 1
    becomes `target_update_ratio` = 1e-3 (updates scale linearly with lr for SGD and Adam
    alike); the suggested max_norm is the median total gradient norm over the first
    `max_steps_for_clip` = 5 steps whose loss is at most twice the first (the scale the
    gradients had before they grew).

    ## Fixes
    lr: lower the learning rate to the suggested value.
    clip: clip the total gradient norm at the measured max_norm (clip_grad_norm_).
    warmup: ramp the learning rate up over the first steps (LinearLR / a warm-up schedule).

    ## Example
    `gradcheck analyze builtin:relu-mlp-bad-init --steps 10 --lr 20` diverges (the SGD
    update overflows the weights); the same with `--lr 0.01` trains without a finding.
    """
    d = diverged_in_training(probe.training)
    if d is None or probe.training is None:
        return
    history = probe.training
    layer = _first_layer(d, probe)
    before = _largest_ratio(history, -1)
    first = _largest_ratio(history, 0)
    suggested_lr = _suggested_lr(history.lr, first[1], limits.target_update_ratio)
    max_norm = _suggested_max_norm(history, int(limits.max_steps_for_clip))
    yield Finding(
        id="training-divergence",
        severity=Severity.ERROR,
        layers=(layer,),
        status=LayerStatus.EXPLODING,  # the layer whose values blew up during the steps
        message=(
            f"Training diverged at step {d.step} of {history.steps_planned}: {_what(d, layer)}"
            f"{_before_text(history, before)}{_largest_text(history)}."
        ),
        evidence=_evidence(d, history, layer, before, first, suggested_lr, max_norm, limits),
        suggestions=_suggestions(history, d, layer, suggested_lr, max_norm, probe),
    )


def _first_layer(d: Divergence, probe: ProbeResult) -> str:
    if d.forward_layer is not None:
        return d.forward_layer
    order = {layer.name: layer.index for layer in probe.layers}
    if d.gradient_layers:  # backward runs last to first: the highest forward index blew up first
        return max(d.gradient_layers, key=lambda n: order.get(n, -1))
    if d.weight_layers:
        return min(d.weight_layers, key=lambda n: order.get(n, 1 << 30))
    return "the loss"


def _what(d: Divergence, layer: str) -> str:
    if d.forward_layer is not None:
        return f"the output of {layer} went non-finite in the forward pass"
    if d.gradient_layers:
        return f"the gradient went non-finite, first at {layer} in backward order"
    if d.weight_layers:
        return f"the update made the weights of {layer} non-finite"
    return f"the loss went non-finite ({d.loss})"


def _largest_ratio(history: TrainingHistory, step: int) -> tuple[str | None, float]:
    """The layer with the largest update/weight ratio at a recorded step, and that ratio."""
    best: tuple[str | None, float] = (None, math.nan)
    for name, values in history.update_ratios.items():
        if not values or not math.isfinite(values[step]):
            continue
        if best[0] is None or values[step] > best[1]:
            best = (name, values[step])
    return best


def largest_change(history: TrainingHistory) -> tuple[str | None, float, int]:
    """The largest per-layer update/weight ratio over every recorded step: layer, ratio, 1-based step."""
    best: tuple[str | None, float, int] = (None, math.nan, 0)
    for name, values in history.update_ratios.items():
        for step, value in enumerate(values, start=1):
            if math.isfinite(value) and (best[0] is None or value > best[1]):
                best = (name, value, step)
    return best


def _largest_text(history: TrainingHistory) -> str:
    name, ratio, step = largest_change(history)
    if name is None or step == len(history.loss):
        return ""
    return f"; the largest change was at step {step}: {name} moved {ratio:.3g} times its norm"


def _before_text(history: TrainingHistory, before: tuple[str | None, float]) -> str:
    if len(history.loss) < 2 or before[0] is None:
        return ""
    return (
        f"; the loss went from {history.loss[0]:.3g} to {history.loss[-1]:.3g}, and the step before "
        f"changed the weights of {before[0]} by {before[1]:.3g} times their norm (healthy: 1e-4 to 1e-2)"
    )


def _suggested_lr(lr: float, first_ratio: float, target: float) -> float:
    if not (math.isfinite(first_ratio) and first_ratio > 0):
        return sig(lr / 10)
    return sig(min(lr, lr * target / first_ratio))


def _suggested_max_norm(history: TrainingHistory, steps: int) -> float | None:
    """The median total gradient norm over the first steps, while the loss had not yet grown."""
    calm = [
        norm
        for norm, loss in zip(history.total_grad_norm[:steps], history.loss[:steps], strict=False)
        if math.isfinite(norm) and norm > 0 and loss <= 2 * history.loss[0]
    ]
    return sig(median(calm)) if calm else None


def _evidence(
    d: Divergence,
    history: TrainingHistory,
    layer: str,
    before: tuple[str | None, float],
    first: tuple[str | None, float],
    suggested_lr: float,
    max_norm: float | None,
    limits: DivergenceLimits,
) -> Evidence:
    norms = history.total_grad_norm
    return {
        "step": d.step,
        "steps_planned": history.steps_planned,
        "layer": layer,
        "forward_layer": d.forward_layer,
        "gradient_layers": list(d.gradient_layers),
        "weight_layers": list(d.weight_layers),
        "loss": d.loss if math.isfinite(d.loss) else None,
        "loss_first": sig(history.loss[0]) if history.loss else None,
        "loss_before": sig(history.loss[-1]) if history.loss else None,
        "update_ratio_first": sig(first[1]) if first[0] else None,
        "update_ratio_first_layer": first[0],
        "update_ratio_before": sig(before[1]) if before[0] else None,
        "update_ratio_before_layer": before[0],
        **_largest_evidence(history),
        "grad_norm_first": sig(norms[0]) if norms else None,
        "grad_norm_before": sig(norms[-1]) if norms else None,
        "lr": history.lr,
        "optimizer": history.optimizer,
        "suggested_lr": suggested_lr,
        "suggested_max_norm": max_norm,
        "target_update_ratio": limits.target_update_ratio,
    }


def _largest_evidence(history: TrainingHistory) -> Evidence:
    name, ratio, step = largest_change(history)
    return {
        "update_ratio_max": sig(ratio) if name else None,
        "update_ratio_max_layer": name,
        "update_ratio_max_step": step if name else None,
    }


def _suggestions(
    history: TrainingHistory,
    d: Divergence,
    layer: str,
    suggested_lr: float,
    max_norm: float | None,
    probe: ProbeResult,
) -> tuple[Suggestion, ...]:
    where = layer_where(layer, probe)
    out = [
        Suggestion(
            fix="lr",
            text=f"lower the learning rate from {history.lr:g} to about {suggested_lr:g} "
            f"(an update/weight ratio near 1e-3 per step at step 1)",
            where=None,
        )
    ]
    if max_norm is not None:
        out.append(
            Suggestion(
                fix="clip",
                text=f"clip the gradient norm at max_norm={max_norm:g} (the median over the first steps): "
                f"torch.nn.utils.clip_grad_norm_(model.parameters(), {max_norm:g}), or --clip {max_norm:g}",
                where=where,
            )
        )
    factor = suggested_lr / history.lr if history.lr else 0.1
    out.append(
        Suggestion(
            fix="warmup",
            text=f"warm the learning rate up over at least the first {max(d.step * 2, 10)} steps, e.g. "
            f"torch.optim.lr_scheduler.LinearLR(optimizer, start_factor={sig(factor):g}, total_iters={max(d.step * 2, 10)})",
            where=None,
        )
    )
    return tuple(out)
