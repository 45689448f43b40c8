"""--steps K: train as the user trains and record what every step did.

Per step: the loss, each layer's gradient norm and update/weight ratio, the total gradient
norm before clipping, and the first step at which the loss, a layer's output, a gradient or
a weight went non-finite. Training stops at that step and the weights are put back to
their state before the first step: a half-diverged model (dead units, zero gradients) would
only add findings about the wreck, so the measured passes describe the model as loaded.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gradcheck_cli.measure.optimizers import ChosenOptimizer, current_lr, group_lrs, optimizer_name
from gradcheck_cli.records.errors import GradcheckError
from gradcheck_cli.records.stats import Divergence, TrainingHistory

Owners = list[tuple[str, list[nn.Parameter]]]
StepLoss = Callable[[int], torch.Tensor]
"""Runs forward on the batch for step i and returns the loss."""


@dataclass(slots=True, kw_only=True)
class StepRecords:
    losses: list[float] = field(default_factory=list)
    grad_norms: list[list[float]] = field(default_factory=list)
    update_ratios: list[list[float]] = field(default_factory=list)
    total_norms: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    """The largest param-group learning rate each step was taken with."""
    divergence: Divergence | None = None
    scaler_skips: int = 0
    """User train_step() calls a GradScaler skipped (inf/NaN gradients, no optimizer.step())."""


def owners_of(model: nn.Module) -> Owners:
    owners = [(name, list(m.parameters(recurse=False))) for name, m in model.named_modules()]
    return [(name, ps) for name, ps in owners if any(p.requires_grad for p in ps)]


def train(
    model: nn.Module,
    chosen: ChosenOptimizer,
    step_loss: StepLoss,
    steps: int,
    clip: float | None,
    scaler: torch.amp.GradScaler,
) -> StepRecords:
    owners = owners_of(model)
    records = StepRecords()
    optimizer = chosen.optimizer
    start = [[p.detach().clone() for p in ps] for _, ps in owners]
    model.train()
    with _ForwardWatch(model) as watch:
        for step in range(steps):
            optimizer.zero_grad(set_to_none=True)
            watch.reset()
            loss = step_loss(step)
            scaler.scale(loss).backward()
            if step == 0:
                refuse_sparse_grads(owners)
            scaler.unscale_(optimizer)  # the records and the step see the true gradients
            grads = _layer_grad_norms(owners)
            grads_finite = _all_finite(owners, grads=True)
            total = _total_norm(owners, clip)
            before = [[p.detach().clone() for p in ps] for _, ps in owners]
            scale = scaler.get_scale() if scaler.is_enabled() else None
            lr = max(group_lrs(optimizer))
            scaler.step(optimizer)
            scaler.update()
            ratios = _update_ratios(owners, before)
            flags = [*grads_finite, *_all_finite(owners, grads=False)]
            wide = [loss.detach().reshape(()), total, *grads, *ratios, *flags]
            host = torch.stack([t.to(_wide(t.device)) for t in wide]).tolist()
            skipped = scale is not None and scaler.get_scale() < scale  # GradScaler skipped an overflow
            records.divergence = _divergence(step, host, owners, watch.first_nonfinite(), skipped)
            if records.divergence is not None:
                _restore(owners, start)
                break
            _append(records, host, len(owners))
            records.lrs.append(lr)
            if chosen.scheduler is not None:
                chosen.scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return records


def _append(records: StepRecords, host: list[float], n: int) -> None:
    records.losses.append(host[0])
    records.total_norms.append(host[1])
    records.grad_norms.append(host[2 : 2 + n])
    records.update_ratios.append(host[2 + n : 2 + 2 * n])


def _layer_grad_norms(owners: Owners) -> list[torch.Tensor]:
    """Each module's own parameter-gradient L2 norm (NaN when none got a gradient), on the device."""
    out = []
    for _, params in owners:
        grads = [_square_sum(p.grad) for p in params if p.grad is not None]
        device = params[0].device
        out.append(torch.stack(grads).sum().sqrt() if grads else torch.tensor(math.nan, device=device))
    return out


def _total_norm(owners: Owners, clip: float | None) -> torch.Tensor:
    """The total gradient norm before clipping; clips in place when --clip is set."""
    params = [p for _, ps in owners for p in ps if p.grad is not None]
    if not params:
        return torch.tensor(math.nan)
    total = torch.stack([_square_sum(p.grad) for p in params if p.grad is not None]).sum().sqrt()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(params, clip)
    return total


def _update_ratios(owners: Owners, before: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    """||W_after - W_before|| / ||W_before|| per module (0 when the step changed nothing)."""
    out = []
    for (_, params), olds in zip(owners, before, strict=True):
        delta = torch.stack(
            [
                _square_sum(p.detach().to(_wide(o.device)) - o.to(_wide(o.device)))
                for p, o in zip(params, olds, strict=True)
            ]
        )
        weight = torch.stack([_square_sum(o) for o in olds])
        out.append(delta.sum().sqrt() / weight.sum().sqrt().clamp_min(1e-300))
    return out


def _wide(device: torch.device) -> torch.dtype:
    """float64 wherever the device has it (MPS has not): a float32 sum of squares overflows at
    norms above ~1.8e19, which would drop the layer that blew up most as merely non-finite."""
    return torch.float32 if device.type == "mps" else torch.float64


def _square_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of squares in float64 (a float32 square of 2e19 is already inf)."""
    return t.detach().to(_wide(t.device)).square().sum()


def _restore(owners: Owners, before: list[list[torch.Tensor]]) -> None:
    with torch.no_grad():
        for (_, params), olds in zip(owners, before, strict=True):
            for p, o in zip(params, olds, strict=True):
                p.copy_(o)


def _divergence(
    step: int, host: list[float], owners: Owners, forward_layer: str | None, skipped: bool
) -> Divergence | None:
    n = len(owners)
    loss, grads_ok, weights_ok = host[0], host[2 + 2 * n : 2 + 3 * n], host[2 + 3 * n :]
    names = [name for name, _ in owners]
    # Flags, not norms: a float32 norm of huge but finite values overflows on its own.
    bad_grads = [name for name, ok in zip(names, grads_ok, strict=True) if not ok]
    bad_weights = [name for name, ok in zip(names, weights_ok, strict=True) if not ok]
    if skipped and math.isfinite(loss):
        bad_grads = []  # float16: the scaler skipped this step, as it is meant to
    if math.isfinite(loss) and not bad_grads and not bad_weights and forward_layer is None:
        return None
    return Divergence(
        step=step + 1,
        loss=loss,
        forward_layer=forward_layer,
        gradient_layers=tuple(bad_grads),
        weight_layers=tuple(bad_weights),
    )


def refuse_sparse_grads(owners: Owners) -> None:
    """--steps needs dense gradients (the finiteness checks, clipping and the update ratios):
    a sparse one (nn.Embedding(sparse=True)) is exit 2 naming the layer, not a crash mid-step."""
    for name, params in owners:
        if any(p.grad is not None and p.grad.layout != torch.strided for p in params):
            raise GradcheckError(
                f"--steps: {name or 'the model'} has sparse gradients (nn.Embedding or "
                "nn.EmbeddingBag with sparse=True), which the training steps do not support",
                "build the embedding with sparse=False for the check (the gradient values are the "
                "same), or run without --steps (the measurement itself reads sparse gradients)",
            )


def _all_finite(owners: Owners, grads: bool) -> list[torch.Tensor]:
    """Per module, 1.0 when every gradient (or weight) element is finite, on the device."""
    out = []
    for _, params in owners:
        tensors = [p.grad if grads else p for p in params]
        checks = [torch.isfinite(t.detach()).all() for t in tensors if t is not None]
        out.append(torch.stack(checks).all().float() if checks else torch.ones((), device=params[0].device))
    return out


class _ForwardWatch:
    """Forward hooks that flag, per step, the first module (in call order) whose output is non-finite."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.handles: list[Any] = []
        self.flags: list[tuple[str, torch.Tensor]] = []

    def __enter__(self) -> _ForwardWatch:
        for name, module in self.model.named_modules():
            if name and any(True for _ in module.parameters(recurse=False)):
                self.handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            tensor = output[0] if isinstance(output, (tuple, list)) and output else output
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
                self.flags.append((name, torch.isfinite(tensor.detach()).all()))

        return hook

    def reset(self) -> None:
        self.flags.clear()

    def first_nonfinite(self) -> str | None:
        if not self.flags:
            return None
        finite = torch.stack([flag for _, flag in self.flags]).tolist()
        return next((name for (name, _), ok in zip(self.flags, finite, strict=True) if not ok), None)


def history(
    chosen: ChosenOptimizer,
    owners: Owners,
    records: StepRecords,
    clip: float | None,
    planned: int,
    loop: str = "gradcheck's loop",
) -> TrainingHistory:
    names = [name for name, _ in owners]
    columns = list(zip(*records.grad_norms, strict=True)) if records.grad_norms else [() for _ in names]
    ratio_columns = (
        list(zip(*records.update_ratios, strict=True)) if records.update_ratios else [() for _ in names]
    )
    return TrainingHistory(
        optimizer=optimizer_name(chosen.optimizer),
        lr=current_lr(chosen.optimizer),
        loss=tuple(records.losses),
        grad_norms={name: tuple(col) for name, col in zip(names, columns, strict=True)},
        update_ratios={name: tuple(col) for name, col in zip(names, ratio_columns, strict=True)},
        total_grad_norm=tuple(records.total_norms),
        optimizer_source=chosen.source,
        optimizer_state=chosen.state_note,
        clip=clip,
        steps_planned=planned,
        divergence=records.divergence,
        loop=loop,
        lrs=tuple(records.lrs),
        scaler_skips=records.scaler_skips,
        initial_lr=_initial_lr(chosen.optimizer),
        scheduler=type(chosen.scheduler).__name__ if chosen.scheduler is not None else None,
    )


def _initial_lr(optimizer: torch.optim.Optimizer) -> float | None:
    """The schedule's starting rate: a torch scheduler writes it into each param group as
    'initial_lr' (kept in the optimizer's state_dict, so a resumed checkpoint has it)."""
    values = [float(g["initial_lr"]) for g in optimizer.param_groups if "initial_lr" in g]
    return max(values) if values else None
