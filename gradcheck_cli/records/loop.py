"""What the user's training loop did, as the monitor saw it: optimizer groups, learning rates,
zero_grad, GradScaler. Recorded only when the monitor is given the optimizer. Torch-free.

Per measured step a LoopPoint (the loop as a whole) and, per layer, a LayerLoop (its optimizer
group, whether its `.grad` was zeroed before this backward, whether its weights changed since
the previous measured step). The JSON-lines file keeps both under the line's "loop" key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerLoop:
    """One parameter-owning layer's part in the loop at one measured step."""

    group: int | None
    """Index of the optimizer param group holding its parameters; None: in no group."""
    grad_zeroed: bool | None
    """Its `.grad` was None or all zero when this step's backward reached it; None: unknown
    (the first measured step, or no backward reached it)."""
    grad_carry: float
    """Norm of the `.grad` left before this backward over the norm this backward added
    (0 when zeroed; 75 when 75 steps' gradients piled up); NaN when unknown."""
    weight_changed: bool | None
    """Its weights differ (bitwise) from the previous measured step; None at the first."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopPoint:
    """The loop as a whole at one measured step."""

    optimizer: str
    """The optimizer's class name."""
    lrs: tuple[float, ...]
    """The learning rate of each param group, as the optimizer holds it now."""
    scheduler: str | None
    """The learning-rate scheduler's class name, when the monitor was given one."""
    calls: int
    """monitor.step() calls before this one (the step number)."""
    optimizer_steps: int
    """optimizer.step() calls that ran before this measured step (a GradScaler skips some)."""
    stepped: bool | None
    """An optimizer step (or a scaler skip) came between the previous backward and this one:
    `.grad` should have been zeroed. False: the backward passes accumulate (no step between)."""
    loss_scale: float | None
    """The GradScaler's scale during this backward; None without an enabled scaler."""
    scaler_skipped: bool
    """Under an enabled GradScaler the gradients hold inf/NaN at this step: the scaler will skip
    the optimizer step and lower its scale (its normal behaviour, not a failure by itself)."""
    skipped_steps: int
    """Optimizer steps the GradScaler skipped so far."""
    settling_skips: int = 0
    """Of those, the skips before the first optimizer step: the scaler lowering its initial scale
    until the scaled gradients fit float16 (log2(initial / settled) halvings), not failures."""
    layers: Mapping[str, LayerLoop]
    eval_modules: tuple[str, ...] = ()
    """BatchNorm (with running statistics) and dropout modules in eval mode at this step: they
    behave as at inference (frozen statistics, no dropout) while the loop trains."""
    backwards: int = 1
    """Backward passes that reached the parameters since the previous measured step began
    (2 or more: gradient accumulation over that many micro-batches); 0 when none was seen."""
    loss_divisor: float = math.nan
    """The loss's denominator over the rows one backward saw, read off the softmax
    cross-entropy's gradient at the model's output: 1 for a mean over the micro-batch, K for
    that mean divided by K; NaN when the output's gradient is not a softmax cross-entropy's."""
    grad_norm_at_step: float = math.nan
    """The whole model's gradient norm when optimizer.step() ran (NaN: no step was seen)."""
    grad_norm_after_step: float = math.nan
    """The same norm when the monitor read the gradients, after the step."""


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def loop_document(point: LoopPoint) -> dict[str, Any]:
    """The JSON form (NaN and inf written as null)."""

    def finite(value: float | None) -> float | None:
        return value if value is not None and math.isfinite(value) else None

    return {
        "optimizer": point.optimizer,
        "lrs": [finite(lr) for lr in point.lrs],
        "scheduler": point.scheduler,
        "calls": point.calls,
        "optimizer_steps": point.optimizer_steps,
        "stepped": point.stepped,
        "loss_scale": finite(point.loss_scale),
        "scaler_skipped": point.scaler_skipped,
        "skipped_steps": point.skipped_steps,
        "settling_skips": point.settling_skips,
        "backwards": point.backwards,
        "loss_divisor": finite(point.loss_divisor),
        "grad_norm_at_step": finite(point.grad_norm_at_step),
        "grad_norm_after_step": finite(point.grad_norm_after_step),
        "layers": {
            name: {
                "group": layer.group,
                "grad_zeroed": layer.grad_zeroed,
                "grad_carry": finite(layer.grad_carry),
                "weight_changed": layer.weight_changed,
            }
            for name, layer in point.layers.items()
        },
        "eval_modules": list(point.eval_modules),
    }


def loop_from_document(doc: Mapping[str, Any] | None) -> LoopPoint | None:
    """A LoopPoint from a JSON line's "loop" value (None when the line has none)."""
    if not doc:
        return None
    layers = {
        str(name): LayerLoop(
            group=None if layer.get("group") is None else int(layer["group"]),
            grad_zeroed=layer.get("grad_zeroed"),
            grad_carry=_num(layer.get("grad_carry")),
            weight_changed=layer.get("weight_changed"),
        )
        for name, layer in dict(doc.get("layers") or {}).items()
    }
    scale = doc.get("loss_scale")
    return LoopPoint(
        optimizer=str(doc.get("optimizer", "")),
        lrs=tuple(_num(lr) for lr in doc.get("lrs") or ()),
        scheduler=doc.get("scheduler"),
        calls=int(doc.get("calls") or 0),
        optimizer_steps=int(doc.get("optimizer_steps") or 0),
        stepped=doc.get("stepped"),
        loss_scale=None if scale is None else float(scale),
        scaler_skipped=bool(doc.get("scaler_skipped")),
        skipped_steps=int(doc.get("skipped_steps") or 0),
        layers=layers,
        settling_skips=int(doc.get("settling_skips") or 0),
        eval_modules=tuple(str(name) for name in doc.get("eval_modules") or ()),
        backwards=int(doc.get("backwards", 1) or 0),
        loss_divisor=_num(doc.get("loss_divisor")),
        grad_norm_at_step=_num(doc.get("grad_norm_at_step")),
        grad_norm_after_step=_num(doc.get("grad_norm_after_step")),
    )
