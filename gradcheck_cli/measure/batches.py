"""Batch generation: random batches from input specs, batches from a sample_batch() hook, labels,
and the per-purpose random streams they draw from. What the inputs are is inputs.py's question."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from gradcheck_cli.config.specs import InputSpec
from gradcheck_cli.records.errors import InputError

EXPLICIT_KEYS = {"args", "kwargs", "target"}
"""The keys of a batch dict given as {'args', 'kwargs', 'target'} (the user's names: 'target' stays)."""


@dataclass(slots=True, kw_only=True)
class Batch:
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    labels: Any = None
    """What the loss compares the output with (a batch's `target` as the user gives it)."""


STREAMS = {"targets": 1, "labels": 2}
"""Random draws besides the inputs, each from its own generator: a loss's random targets never
repeat the inputs (for a model whose output equals its input that would make every gradient 0)."""


def stream(seed: int, purpose: str, index: int = 0) -> torch.Generator:
    """The generator for `purpose` ('targets', 'labels') on batch `index`, independent of the inputs'.

    The inputs draw from a generator seeded with `seed` itself; these seeds are a 64-bit mix of
    (seed, purpose, index) (splitmix64's finaliser), so they never coincide with a small seed.
    """
    value = (seed * 0x9E3779B97F4A7C15 + STREAMS[purpose] * 0xBF58476D1CE4E5B9 + index) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return torch.Generator().manual_seed(value ^ (value >> 31))


_MASK64 = (1 << 64) - 1


def reference_input(batch: Batch) -> torch.Tensor | None:
    """The batch's first float tensor (positional first): what a reconstruction loss gives back."""
    for value in (*batch.args, *batch.kwargs.values()):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value
    return None


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
            with contextlib.redirect_stdout(sys.stderr):  # keep a JSON report on stdout clean
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
                labels=raw.get("target"),
            )
        return Batch(args=(), kwargs=dict(raw))
    if isinstance(raw, (tuple, list)) and len(raw) == 2:
        inputs, target = raw
        if isinstance(inputs, dict):
            return Batch(args=(), kwargs=dict(inputs), labels=target)
        if isinstance(inputs, (tuple, list)):
            return Batch(args=tuple(inputs), labels=target)
        return Batch(args=(inputs,), labels=target)
    if isinstance(raw, (tuple, list)):
        return Batch(args=tuple(raw))
    raise InputError(
        f"sample_batch() returned a {type(raw).__name__}",
        "return a tensor, a dict of keyword arguments, (inputs, target), or {'args', 'kwargs', 'target'}",
    )


def labels_from_spec(spec: InputSpec, seed: int, index: int) -> torch.Tensor:
    """--labels SPEC for batch `index`: integer class labels (or float targets), from the labels stream."""
    return generate(spec, stream(seed, "labels", index), torch.float32)


def labels_for_head(output: Any, batch_size: int) -> InputSpec | None:
    """Labels shaped for the head that consumes them, read off the output of a forward without them.

    (B, C) logits: one class per sample, int:B:C; (B, T, V): one per position, int:BxT:V; (B, 1)
    or (B,): a regression, float:B. None when the output does not say.
    """
    from gradcheck_cli.measure.outputs import split_output

    head = split_output(output).main
    if head is None or not head.tensor.is_floating_point() or head.tensor.dim() == 0:
        return None
    shape = tuple(head.tensor.shape)
    if shape[0] != batch_size:
        return None
    if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        return InputSpec(shape=(batch_size,))
    return InputSpec(shape=shape[:-1], kind="int", low=0, high=shape[-1])


def token_targets(spec: InputSpec, generator: torch.Generator) -> torch.Tensor:
    """Next-token-style targets for --target-arg: integers of the input's shape and range."""
    return torch.randint(0, int(spec.high or 2), spec.shape, generator=generator)


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
