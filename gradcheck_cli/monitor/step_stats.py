"""The numbers of one measured step, as the trend rules, the sinks and the JSON lines keep them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from gradcheck_cli.records.history import LayerPoint, StepStats, UnitPoint
from gradcheck_cli.records.stats import ActivationStats, LayerStats, ModelInfo

if TYPE_CHECKING:
    from torch import nn


def step_stats(
    step: int,
    layers: Sequence[LayerStats],
    activations: Iterable[ActivationStats],
    loss: float | None,
    seconds: float = 0.0,
) -> StepStats:
    """The numbers of one measured step (trainable layers only: a frozen layer has no trend)."""
    points = tuple(
        LayerPoint(
            name=s.name,
            type=s.type,
            index=s.index,
            grad_norm=s.grad_norm,
            weight_norm=s.weight_norm,
            grad_weight_ratio=s.grad_weight_ratio,
            zero_grad_fraction=s.zero_grad_fraction,
            nonfinite=s.nonfinite,
        )
        for s in layers
        if s.trainable
    )
    units = tuple(
        UnitPoint(
            name=a.name,
            family=a.family,
            after=a.after,
            dead_fraction=a.dead_fraction,
            saturated_fraction=a.saturated_fraction,
        )
        for a in activations
    )
    frozen = tuple(s.name for s in layers if not s.trainable)
    return StepStats(step=step, loss=loss, seconds=seconds, layers=points, units=units, frozen=frozen)


def model_info(model: nn.Module) -> ModelInfo:
    params = list({id(p): p for p in model.parameters()}.values())
    first = params[0] if params else None
    return ModelInfo(
        class_name=type(model).__name__,
        parameters=sum(p.numel() for p in params),
        trainable=sum(p.numel() for p in params if p.requires_grad),
        device=str(first.device) if first is not None else "cpu",
        dtype=str(first.dtype).removeprefix("torch.") if first is not None else "float32",
    )
