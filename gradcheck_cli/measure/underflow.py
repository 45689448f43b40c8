"""float16 underflow: how many gradient elements flush to zero without a GradScaler, and the
loss scale that keeps them (measured on the first batch, in float32 and under float16 autocast)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from gradcheck_cli.measure.passes import Prepared, forward, loss_of
from gradcheck_cli.records.stats import Fp16Underflow, LayerUnderflow

# The loss scale torch.amp.GradScaler starts at and how it backs off after an overflow.
GRAD_SCALER_INIT = 2.0**16
GRAD_SCALER_BACKOFF = 0.5

RunLoss = Callable[[str], torch.Tensor]
"""Runs one forward pass under the given dtype ('float32' or 'float16') and returns the loss."""


def measure_precision(prepared: Prepared) -> Fp16Underflow:
    """float16: how many gradient elements flush to zero without a GradScaler, and the scale to use."""
    first = prepared.batches[0]

    def run_loss(dtype: str) -> torch.Tensor:
        return loss_of(prepared, first, forward(prepared, first, dtype), 0).value

    return measure_fp16_underflow(prepared.model, run_loss, prepared.config.seed)


def measure_fp16_underflow(model: nn.Module, run_loss: RunLoss, seed: int) -> Fp16Underflow:
    """Count parameter-gradient elements that are nonzero in float32 but zero under float16 autocast.

    Three runs of the same batch with the same seed (dropout draws the same masks): float32
    for reference, float16 without loss scaling, float16 with the loss scaled as GradScaler
    would scale it (backing off on overflow). Counts stay on the device; one host transfer.
    """
    names, params = _owned_parameters(model)
    was_training = model.training
    model.train()
    try:
        nonzero = [g != 0 for g in _gradients(model, params, lambda: run_loss("float32"), seed)]
        unscaled_grads = _gradients(model, params, lambda: run_loss("float16"), seed)
        unscaled = _flushed(unscaled_grads, nonzero)
        # Overflow already without scaling (the forward overflows float16): no scale helps.
        start = GRAD_SCALER_INIT if _all_finite(unscaled_grads) else 1.0
        scale, scaled_grads = _settle_loss_scale(model, params, run_loss, seed, start)
        scaled = _flushed(scaled_grads, nonzero)
        counts = torch.stack([torch.stack([m.sum() for m in nonzero]).float(), unscaled, scaled]).tolist()
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return _underflow_record(names, counts, scale)


def _owned_parameters(model: nn.Module) -> tuple[list[str], list[nn.Parameter]]:
    """Trainable parameters with the name of the module that owns them (tied ones once)."""
    names, params = [], []
    for full_name, param in model.named_parameters():
        if param.requires_grad:
            owner = full_name.rpartition(".")[0]
            names.append(owner or type(model).__name__)
            params.append(param)
    return names, params


def _gradients(
    model: nn.Module,
    params: list[nn.Parameter],
    loss: Callable[[], torch.Tensor],
    seed: int,
    scale: float = 1.0,
) -> list[torch.Tensor]:
    torch.manual_seed(seed)
    model.zero_grad(set_to_none=True)
    (loss() * scale).backward()
    return [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]


def _flushed(grads: list[torch.Tensor], nonzero: list[torch.Tensor]) -> torch.Tensor:
    """Per parameter: elements that are zero here but were nonzero in float32."""
    return torch.stack([((g == 0) & m).sum() for g, m in zip(grads, nonzero, strict=True)]).float()


def _settle_loss_scale(
    model: nn.Module, params: list[nn.Parameter], run_loss: RunLoss, seed: int, start: float
) -> tuple[float, list[torch.Tensor]]:
    """The scale GradScaler would settle on for this batch: halve while the scaled gradients overflow."""
    scale = start
    while True:
        grads = _gradients(model, params, lambda: run_loss("float16"), seed, scale)
        if scale <= 1.0 or _all_finite(grads):
            return scale, grads
        scale *= GRAD_SCALER_BACKOFF


def _all_finite(grads: list[torch.Tensor]) -> bool:
    return bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())  # one host sync


def _underflow_record(names: list[str], counts: list[list[float]], scale: float) -> Fp16Underflow:
    per_layer: dict[str, list[float]] = {}
    for name, nonzero, unscaled, scaled in zip(names, *counts, strict=True):
        totals = per_layer.setdefault(name, [0.0, 0.0, 0.0])
        for i, value in enumerate((nonzero, unscaled, scaled)):
            totals[i] += value
    nonzero_total = sum(counts[0])
    return Fp16Underflow(
        loss_scale=scale,
        elements=int(nonzero_total),
        fraction_without_scaler=_fraction(sum(counts[1]), nonzero_total),
        fraction_with_scaler=_fraction(sum(counts[2]), nonzero_total),
        layers=tuple(
            LayerUnderflow(
                name=name,
                elements=int(t[0]),
                fraction_without_scaler=_fraction(t[1], t[0]),
                fraction_with_scaler=_fraction(t[2], t[0]),
            )
            for name, t in per_layer.items()
        ),
    )


def _fraction(part: float, whole: float) -> float:
    return part / whole if whole else 0.0
