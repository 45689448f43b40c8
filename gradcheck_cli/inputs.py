"""Build the sample batches: from --input, the file's sample_batch(), or the model itself."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gradcheck_cli.errors import InputError
from gradcheck_cli.specs import InputSpec, parse_input

DEFAULT_BATCH = 16
DEFAULT_SEQ = 32
EXPLICIT_KEYS = {"args", "kwargs", "target"}


@dataclass(slots=True, kw_only=True)
class Batch:
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    target: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class InputPlan:
    """Where the batches come from, said in the report."""

    specs: tuple[InputSpec, ...]
    origin: str
    """--input, sample_batch(), builtin, or inferred from <layer>."""


def generate(spec: InputSpec, generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    if spec.kind == "int":
        high = int(spec.high or 2)
        return torch.randint(0, high, spec.shape, generator=generator)
    if spec.low is not None and spec.high is not None:
        return spec.low + (spec.high - spec.low) * torch.rand(spec.shape, generator=generator, dtype=dtype)
    return torch.randn(spec.shape, generator=generator, dtype=dtype)


def batches_from_specs(specs: Sequence[InputSpec], count: int, seed: int, dtype: torch.dtype) -> list[Batch]:
    generator = torch.Generator().manual_seed(seed)
    return [Batch(args=tuple(generate(s, generator, dtype) for s in specs)) for _ in range(count)]


def batches_from_hook(hook: Callable[[], Any], count: int, seed: int) -> list[Batch]:
    out = []
    for i in range(count):
        torch.manual_seed(seed + i)
        try:
            raw = hook()
        except Exception as exc:
            raise InputError(f"sample_batch() raised {type(exc).__name__}: {exc}") from exc
        out.append(normalize_batch(raw))
    return out


def normalize_batch(raw: Any) -> Batch:
    """A batch as a training loop sees it: tensor, kwargs dict, (inputs, target), or args/kwargs/target."""
    if isinstance(raw, torch.Tensor):
        return Batch(args=(raw,))
    if isinstance(raw, dict):
        if raw and set(raw) <= EXPLICIT_KEYS:
            args = raw.get("args", ())
            return Batch(
                args=tuple(args) if isinstance(args, (tuple, list)) else (args,),
                kwargs=dict(raw.get("kwargs", {})),
                target=raw.get("target"),
            )
        return Batch(args=(), kwargs=dict(raw))
    if isinstance(raw, (tuple, list)) and len(raw) == 2:
        inputs, target = raw
        if isinstance(inputs, dict):
            return Batch(args=(), kwargs=dict(inputs), target=target)
        if isinstance(inputs, (tuple, list)):
            return Batch(args=tuple(inputs), target=target)
        return Batch(args=(inputs,), target=target)
    if isinstance(raw, (tuple, list)):
        return Batch(args=tuple(raw))
    raise InputError(
        f"sample_batch() returned a {type(raw).__name__}",
        "return a tensor, a dict of keyword arguments, (inputs, target), or {'args', 'kwargs', 'target'}",
    )


def infer_inputs(model: nn.Module, batch_size: int | None, layout: str | None) -> InputPlan:
    """An input for the model, read from its first layer that reveals the input's shape."""
    size = batch_size or DEFAULT_BATCH
    for name, module in model.named_modules():
        spec = _spec_for(module, size, layout)
        if spec is not None:
            return InputPlan(
                specs=(spec,), origin=f"inferred from {name or 'the model'} ({type(module).__name__})"
            )
    raise InputError(
        f"cannot infer an input for {type(model).__name__}: no Linear, Conv, Embedding or recurrent layer found",
        "pass one with --input, e.g. --input 16x784, or define sample_batch() in the file",
    )


def _spec_for(module: nn.Module, size: int, layout: str | None) -> InputSpec | None:
    if isinstance(module, nn.Embedding):
        return InputSpec(shape=(size, DEFAULT_SEQ), kind="int", low=0, high=module.num_embeddings)
    if isinstance(module, nn.Linear):
        return InputSpec(shape=(size, module.in_features))
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        dims = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}[type(module)]
        side = 28 if module.in_channels == 1 else 32
        return InputSpec(shape=(size, module.in_channels) + (side,) * dims)
    if isinstance(module, nn.RNNBase):
        batch_first = module.batch_first if layout is None else layout == "batch-first"
        seq_shape = (size, DEFAULT_SEQ) if batch_first else (DEFAULT_SEQ, size)
        return InputSpec(shape=seq_shape + (module.input_size,))
    return None


def plan_inputs(
    model: nn.Module,
    given: Sequence[InputSpec],
    builtin_defaults: Sequence[str],
    batch_size: int | None,
    layout: str | None,
) -> InputPlan:
    if given:
        return InputPlan(specs=tuple(given), origin="--input")
    if builtin_defaults:
        return InputPlan(specs=tuple(parse_input(s) for s in builtin_defaults), origin="builtin")
    return infer_inputs(model, batch_size, layout)


def move(value: Any, device: torch.device | str, dtype: torch.dtype | None = None) -> Any:
    """Move tensors inside tuples, lists and dicts; float tensors also take `dtype`."""
    if isinstance(value, torch.Tensor):
        if dtype is not None and value.is_floating_point():
            return value.to(device=device, dtype=dtype)
        return value.to(device)
    if isinstance(value, dict):
        return {k: move(v, device, dtype) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(move(v, device, dtype) for v in value)
    return value


def describe(value: Any) -> str:
    """Shapes of a batch's tensors, for messages: 'float32[16x784]'."""
    if isinstance(value, torch.Tensor):
        return f"{str(value.dtype).removeprefix('torch.')}[{'x'.join(map(str, value.shape))}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {describe(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(describe(v) for v in value) + ")"
    return type(value).__name__
