"""Turn a model's output into a scalar loss: auto, ce, mse, sum, or the model's own."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as F

from gradcheck_cli.measure.outputs import Head, split_output
from gradcheck_cli.records.errors import LossError


@dataclass(slots=True)
class LossChoice:
    value: torch.Tensor
    name: str
    reason: str
    left_out: tuple[Head, ...] = ()
    """Float outputs the loss does not use (their feeders get no gradient by the loss's choice)."""


@dataclass(frozen=True, slots=True)
class Criterion:
    """A loss with its labels or targets drawn once, applied to the main output and each aux head."""

    name: str
    reason: str
    apply: Callable[[torch.Tensor], torch.Tensor]


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
    reference: torch.Tensor | None = None,
) -> LossChoice:
    """The loss a training script would take on `output`.

    `generator` draws random labels or targets (its own stream, never the inputs'); `reference`
    is the batch's first float input, the goal of a reconstruction loss.
    """
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
    parts = split_output(output)
    if parts.main is None or not parts.main.tensor.is_floating_point():
        raise LossError(
            f"the model's output ({type(output).__name__}) holds no floating-point tensor to take a loss from",
            "define loss_fn(output, target) in the file, or return a tensor",
        )
    require_grad(parts.main.tensor, "the model's output")
    tensor = parts.main.tensor.float()
    criterion = _criterion(tensor, mode, target, generator, reference)
    value = criterion.apply(tensor)
    for head in parts.aux:
        value = value + head.weight * criterion.apply(head.tensor.float())
    return LossChoice(value, criterion.name, criterion.reason + parts.describe_aux(), parts.left_out)


def _criterion(
    tensor: torch.Tensor, mode: str, target: Any, generator: torch.Generator, reference: Any
) -> Criterion:
    if mode == "sum":
        return Criterion("sum", "--loss sum: the sum of the output", lambda t: t.sum())
    if mode == "mse":
        return _mse(tensor, target, generator, "--loss mse")
    if mode == "ce":
        return _cross_entropy(tensor, target, generator, "--loss ce")
    return _auto(tensor, target, generator, reference)


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


def _auto(tensor: torch.Tensor, target: Any, generator: torch.Generator, reference: Any) -> Criterion:
    if isinstance(target, torch.Tensor):
        if target.is_floating_point():
            return _mse(tensor, target, generator, "float target: MSE")
        return _cross_entropy(tensor, target, generator, "integer target: cross-entropy")
    reconstruction = _reconstruction(tensor, reference)
    if reconstruction is not None:
        return reconstruction
    if tensor.dim() >= 2 and tensor.shape[_class_dim(tensor)] > 1:
        if _is_log_probs(tensor):
            return _nll(tensor, generator)
        return _cross_entropy(
            tensor, None, generator, "logits over classes: cross-entropy with random labels"
        )
    if tensor.dim() <= 2 and tensor.numel() and _in_unit_interval(tensor):
        labels = torch.randint(0, 2, (tensor.shape[0],), generator=generator).to(tensor)
        return Criterion(
            "bce",
            "a probability per sample: binary cross-entropy",
            lambda t: F.binary_cross_entropy(_per_sample(t).clamp(1e-7, 1 - 1e-7), labels),
        )
    return _mse(tensor, None, generator, "regression output: MSE against random targets")


def _per_sample(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.reshape(tensor.shape[0], -1)[:, 0]


def _reconstruction(tensor: torch.Tensor, reference: Any) -> Criterion | None:
    """An output of the input's shape (autoencoder, VAE, denoiser) is trained to give the input back."""
    if not isinstance(reference, torch.Tensor) or not reference.is_floating_point():
        return None
    if tensor.dim() < 2 or reference.shape != tensor.shape:
        return None
    goal = reference.detach().to(tensor)
    with torch.no_grad():
        if bool(torch.equal(tensor, goal)):
            return None  # an identity map: the reconstruction loss would be exactly 0
    shape = "x".join(map(str, tensor.shape))
    why = f"the output has the input's shape ({shape}): reconstruction {{}} against the input"
    hint = " (--loss ce if its channels are classes)" if tensor.dim() == 4 else ""
    if _in_unit_interval(tensor) and _in_unit_interval(goal):
        return Criterion(
            "bce", why.format("BCE") + hint, lambda t: F.binary_cross_entropy(t.clamp(1e-7, 1 - 1e-7), goal)
        )
    return Criterion("mse", why.format("MSE") + hint, lambda t: F.mse_loss(t, goal))


def _in_unit_interval(tensor: torch.Tensor) -> bool:
    with torch.no_grad():
        return bool(((tensor >= 0) & (tensor <= 1)).all())


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


def _cross_entropy(tensor: torch.Tensor, target: Any, generator: torch.Generator, reason: str) -> Criterion:
    if tensor.dim() < 2:
        raise LossError(
            f"cross-entropy needs logits of shape (batch, classes); the output is {tuple(tensor.shape)}"
        )
    labels = target if isinstance(target, torch.Tensor) else _labels(tensor, generator)
    flat = labels.reshape(-1).long().to(tensor.device)

    def apply(t: torch.Tensor) -> torch.Tensor:
        try:
            return F.cross_entropy(_move_class_last(t), flat)
        except (RuntimeError, IndexError) as exc:
            raise LossError(f"cross-entropy failed on output {tuple(t.shape)}: {exc}") from None

    return Criterion("ce", reason, apply)


def _nll(tensor: torch.Tensor, generator: torch.Generator) -> Criterion:
    flat = _labels(tensor, generator).reshape(-1)
    return Criterion(
        "nll",
        "rows log-sum-exp to 0 (log-probabilities): NLL with random labels",
        lambda t: F.nll_loss(_move_class_last(t), flat),
    )


def _mse(tensor: torch.Tensor, target: Any, generator: torch.Generator, reason: str) -> Criterion:
    if isinstance(target, torch.Tensor) and target.shape == tensor.shape:
        goal = target.to(tensor)
    else:
        goal = torch.randn(tensor.shape, generator=generator).to(tensor)
    return Criterion("mse", reason, lambda t: F.mse_loss(t, goal))
