"""Turn a model's output into a scalar loss: auto, ce, mse, sum, or the model's own."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as F

from gradcheck_cli.errors import LossError


@dataclass(slots=True)
class LossChoice:
    value: torch.Tensor
    name: str
    reason: str


def first_tensor(output: Any) -> torch.Tensor | None:
    """The main tensor of an output: itself, logits of a dict/ModelOutput, or the first of a tuple."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict) or hasattr(output, "logits"):
        for key in ("logits", "output", "out", "prediction", "recon"):
            value = output.get(key) if isinstance(output, dict) else getattr(output, key, None)
            if isinstance(value, torch.Tensor):
                return value
        values = output.values() if isinstance(output, dict) else ()
        return next((v for v in values if isinstance(v, torch.Tensor) and v.is_floating_point()), None)
    if isinstance(output, (tuple, list)):
        for item in output:
            found = first_tensor(item)
            if found is not None:
                return found
    return None


def own_loss(output: Any) -> torch.Tensor | None:
    """A scalar loss the model computed itself: a scalar output, output['loss'], or a scalar in a tuple."""
    if isinstance(output, torch.Tensor):
        return output if output.numel() == 1 and output.requires_grad else None
    if isinstance(output, dict) or hasattr(output, "loss"):
        value = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
        return value if isinstance(value, torch.Tensor) and value.numel() == 1 else None
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor) and item.numel() == 1 and item.requires_grad:
                return item
    return None


def compute_loss(
    output: Any,
    mode: str,
    target: Any,
    loss_fn: Callable[..., Any] | None,
    generator: torch.Generator,
    loss_fn_origin: str = "loss_fn() in the model file",
) -> LossChoice:
    if mode in ("auto", "output"):
        loss = own_loss(output)
        if loss is not None:
            return LossChoice(loss.float().reshape(()), "output", "the model returned its own scalar loss")
        if mode == "output":
            raise LossError(
                "--loss output: the model returned no scalar loss",
                "pass targets into forward with --target-arg NAME (e.g. targets), or use --loss auto",
            )
    if mode == "auto" and loss_fn is not None:
        return _user_loss(loss_fn, output, target, loss_fn_origin)
    tensor = first_tensor(output)
    if tensor is None or not tensor.is_floating_point():
        raise LossError(
            f"the model's output ({type(output).__name__}) holds no floating-point tensor to take a loss from",
            "define loss_fn(output, target) in the file, or return a tensor",
        )
    require_grad(tensor, "the model's output")
    tensor = tensor.float()
    if mode == "sum":
        return LossChoice(tensor.sum(), "sum", "--loss sum: the sum of the output")
    if mode == "mse":
        return _mse(tensor, target, generator, "--loss mse")
    if mode == "ce":
        return _cross_entropy(tensor, target, generator, "--loss ce")
    return _auto(tensor, target, generator)


def require_grad(value: torch.Tensor, what: str) -> None:
    """A loss no parameter leads to has no gradient to measure: say why, before backward() fails."""
    if value.requires_grad or not torch.is_grad_enabled():
        return
    raise LossError(
        f"{what} does not depend on any trainable parameter, so no gradient can flow back from it",
        "forward must return a tensor computed from the parameters: look for .detach(), .item(), "
        "torch.no_grad() or a new tensor (torch.tensor(...)) on the way to the output",
    )


def _user_loss(loss_fn: Callable[..., Any], output: Any, target: Any, origin: str) -> LossChoice:
    try:
        with contextlib.redirect_stdout(sys.stderr):  # keep a JSON report on stdout clean
            value = loss_fn(output, target) if target is not None else _call_loose(loss_fn, output)
    except Exception as exc:
        raise LossError(f"loss_fn raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        raise LossError(f"loss_fn returned {type(value).__name__}, not a scalar tensor")
    return LossChoice(value.float().reshape(()), "loss_fn", origin)


def _call_loose(loss_fn: Callable[..., Any], output: Any) -> Any:
    try:
        return loss_fn(output)
    except TypeError:
        return loss_fn(output, None)


def _auto(tensor: torch.Tensor, target: Any, generator: torch.Generator) -> LossChoice:
    if isinstance(target, torch.Tensor):
        if target.is_floating_point():
            return _mse(tensor, target, generator, "float target: MSE")
        return _cross_entropy(tensor, target, generator, "integer target: cross-entropy")
    if tensor.dim() >= 2 and tensor.shape[_class_dim(tensor)] > 1:
        if _is_log_probs(tensor):
            return _nll(tensor, generator)
        return _cross_entropy(
            tensor, None, generator, "logits over classes: cross-entropy with random labels"
        )
    if tensor.dim() <= 2 and tensor.numel() and bool(((tensor >= 0) & (tensor <= 1)).all()):
        probs = tensor.reshape(tensor.shape[0], -1)[:, 0].clamp(1e-7, 1 - 1e-7)
        labels = torch.randint(0, 2, probs.shape, generator=generator).to(probs)
        return LossChoice(
            F.binary_cross_entropy(probs, labels), "bce", "a probability per sample: binary cross-entropy"
        )
    return _mse(tensor, None, generator, "regression output: MSE against random targets")


def _class_dim(tensor: torch.Tensor) -> int:
    """Classes sit in the last dimension, except per-pixel logits (B, C, H, W): dimension 1."""
    return 1 if tensor.dim() == 4 else tensor.dim() - 1


def _is_log_probs(tensor: torch.Tensor) -> bool:
    dim = _class_dim(tensor)
    with torch.no_grad():
        if bool((tensor > 1e-6).any()):
            return False
        return bool(torch.logsumexp(tensor, dim=dim).abs().max() < 1e-3)


def _labels(tensor: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    dim = _class_dim(tensor)
    shape = tensor.shape[:dim] + tensor.shape[dim + 1 :]
    return torch.randint(0, tensor.shape[dim], shape, generator=generator).to(tensor.device)


def _move_class_last(tensor: torch.Tensor) -> torch.Tensor:
    dim = _class_dim(tensor)
    moved = tensor.movedim(dim, -1) if dim != tensor.dim() - 1 else tensor
    return moved.reshape(-1, tensor.shape[dim])


def _cross_entropy(tensor: torch.Tensor, target: Any, generator: torch.Generator, reason: str) -> LossChoice:
    if tensor.dim() < 2:
        raise LossError(
            f"cross-entropy needs logits of shape (batch, classes); the output is {tuple(tensor.shape)}"
        )
    labels = target if isinstance(target, torch.Tensor) else _labels(tensor, generator)
    logits = _move_class_last(tensor)
    try:
        loss = F.cross_entropy(logits, labels.reshape(-1).long())
    except (RuntimeError, IndexError) as exc:
        raise LossError(f"cross-entropy failed on output {tuple(tensor.shape)}: {exc}") from None
    return LossChoice(loss, "ce", reason)


def _nll(tensor: torch.Tensor, generator: torch.Generator) -> LossChoice:
    logits = _move_class_last(tensor)
    loss = F.nll_loss(logits, _labels(tensor, generator).reshape(-1))
    return LossChoice(loss, "nll", "rows log-sum-exp to 0 (log-probabilities): NLL with random labels")


def _mse(tensor: torch.Tensor, target: Any, generator: torch.Generator, reason: str) -> LossChoice:
    if isinstance(target, torch.Tensor) and target.shape == tensor.shape:
        goal = target.to(tensor)
    else:
        goal = torch.randn(tensor.shape, generator=generator).to(tensor)
    return LossChoice(F.mse_loss(tensor, goal), "mse", reason)
