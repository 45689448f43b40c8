"""--steps with the user's own step: `train_step(model, batch, optimizer)` from the model file.

The function does what the user's loop does (zero_grad or not, accumulation, clipping, a
scheduler it steps itself); gradcheck only watches the optimizer: a hook before each
optimizer.step() reads the gradients it is about to apply (per-layer norms, finiteness, the
total norm) and keeps the weights, one after it measures the update. A train_step that takes a
fourth argument named `scheduler` gets the scheduler from the model file's factory
(`build_scheduler(optimizer)`), to step when the user's loop steps it. A call that ran no
optimizer.step() with inf/NaN gradients is a GradScaler's skipped step (its scale settling, as in
the user's own run): counted in `scaler_skips`, not recorded as a step, not an error.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from gradcheck_cli.measure.batches import Batch
from gradcheck_cli.measure.optimizers import ChosenOptimizer
from gradcheck_cli.measure.training import (
    Owners,
    StepRecords,
    _all_finite,
    _append,
    _divergence,
    _ForwardWatch,
    _layer_grad_norms,
    _restore,
    _total_norm,
    _update_ratios,
    owners_of,
)
from gradcheck_cli.records.errors import ConfigError

StepBatch = Callable[[int], Any]
"""The batch for step i, as sample_batch() gives it."""


def train_user_step(
    model: nn.Module, chosen: ChosenOptimizer, train_step: Callable[..., Any], batch_of: StepBatch, steps: int
) -> StepRecords:
    owners = owners_of(model)
    records = StepRecords()
    optimizer = chosen.optimizer
    start = [[p.detach().clone() for p in ps] for _, ps in owners]
    pending: dict[str, Any] = {}

    def before_step(opt: Any, args: Any, kwargs: Any) -> None:
        pending["lr"] = max(float(g["lr"]) for g in opt.param_groups)
        pending["grads"] = _layer_grad_norms(owners)
        pending["finite"] = _all_finite(owners, grads=True)
        pending["total"] = _total_norm(owners, None)
        pending["before"] = [[p.detach().clone() for p in ps] for _, ps in owners]

    def after_step(opt: Any, args: Any, kwargs: Any) -> None:
        pending["ratios"] = _update_ratios(owners, pending["before"])

    handles = [optimizer.register_step_pre_hook(before_step), optimizer.register_step_post_hook(after_step)]
    extra = {"scheduler": chosen.scheduler} if _takes_scheduler(train_step) else {}
    model.train()
    try:
        with _ForwardWatch(model) as watch:
            for step in range(steps):
                pending.clear()
                watch.reset()
                loss = _call(train_step, model, batch_of(step), optimizer, extra)
                if "grads" not in pending and _overflowed(owners):
                    records.scaler_skips += 1  # a GradScaler skipped it: nothing applied, nothing to record
                    continue
                host = _step_numbers(step, loss, pending, owners)
                records.divergence = _divergence(step, host, owners, watch.first_nonfinite(), False)
                if records.divergence is not None:
                    _restore(owners, start)
                    break
                _append(records, host, len(owners))
                records.lrs.append(pending["lr"])
    finally:
        for handle in handles:
            handle.remove()
    optimizer.zero_grad(set_to_none=True)
    if records.scaler_skips and not records.losses and records.divergence is None:
        raise ConfigError(
            f"--steps: the gradients held inf/NaN at each of the {steps} steps, so train_step() never "
            "called optimizer.step() (a GradScaler skips such steps): nothing was trained",
            "the model overflows float16 at this loss scale: run more --steps so the scale can settle, "
            "or train the checkpoint in bfloat16/float32 (--dtype)",
        )
    return records


def _overflowed(owners: Owners) -> bool:
    """Some parameter's .grad holds inf/NaN: the step a GradScaler skips (it calls no optimizer.step)."""
    return any(
        p.grad is not None and not bool(torch.isfinite(p.grad.detach()).all()) for _, ps in owners for p in ps
    )


def _step_numbers(step: int, loss: Any, pending: dict[str, Any], owners: Owners) -> list[float]:
    """One step's loss, total norm, per-layer norms and update ratios, and finiteness flags, in one
    host transfer (as training.train lays them out)."""
    if "grads" not in pending:
        raise ConfigError(
            f"--steps: train_step() in the model file did not call optimizer.step() (step {step + 1})",
            "train_step(model, batch, optimizer) must run one training step with the optimizer it is given",
        )
    ratios = pending.get("ratios") or [torch.zeros(()) for _ in owners]
    flags = [*pending["finite"], *_all_finite(owners, grads=False)]
    value = torch.as_tensor(float("nan") if loss is None else _float(loss))
    return torch.stack(
        [
            value.float().reshape(()),
            pending["total"].float().reshape(()),
            *pending["grads"],
            *ratios,
            *flags,
        ]
    ).tolist()


def user_batch(batch: Batch) -> Any:
    """The batch as sample_batch() returned it: the inputs (a tensor, a tuple or a kwargs dict),
    paired with the labels (the target) when there are some."""
    if batch.kwargs and not batch.args:
        inputs: Any = dict(batch.kwargs)
    else:
        inputs = batch.args[0] if len(batch.args) == 1 else tuple(batch.args)
    return inputs if batch.labels is None else (inputs, batch.labels)


def _float(loss: Any) -> float:
    return float(loss.detach().float()) if isinstance(loss, torch.Tensor) else float(loss)


def _takes_scheduler(train_step: Callable[..., Any]) -> bool:
    try:
        return "scheduler" in inspect.signature(train_step).parameters
    except (TypeError, ValueError):
        return False


def _call(
    train_step: Callable[..., Any], model: nn.Module, batch: Any, optimizer: Any, extra: dict[str, Any]
) -> Any:
    try:
        return train_step(model, batch, optimizer, **extra)
    except Exception as exc:
        raise ConfigError(
            f"--steps: train_step() in the model file raised {type(exc).__name__}: {exc}",
            "it is called as train_step(model, batch, optimizer) with a batch as sample_batch() returns it",
        ) from None
