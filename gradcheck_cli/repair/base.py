"""What every transform shares: its inputs, its result, and small helpers on module trees."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from gradcheck_cli.measure.layer_kinds import LINEAR_LAYERS
from gradcheck_cli.records.findings import Finding
from gradcheck_cli.records.stats import ProbeResult
from gradcheck_cli.records.text import span

ModuleT = TypeVar("ModuleT", bound=nn.Module)
WEIGHT_LAYERS = LINEAR_LAYERS


class NotApplicable(Exception):
    """The fix does not fit this model; the message says why in one line."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RepairContext:
    """What a transform may use besides the model copy it changes."""

    run_forward: Callable[[nn.Module], Any]
    """One forward pass of the first sample batch through the given model."""
    run_backward: Callable[[nn.Module], None]
    """Forward, loss and backward of the first sample batch (the same loss as the analysis)."""
    before: ProbeResult
    finding: Finding


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    model: nn.Module
    """The changed copy (the same object, unless the transform had to rebuild it, as torch.fx does)."""
    where: str
    """The modules changed, summarised."""
    note: str
    """One line saying what was done."""


Transform = Callable[[nn.Module, RepairContext], Change]


def replace_module(root: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Put `new` at dotted `name` under `root`; returns the root (which is `new` for name '')."""
    if not name:
        return new
    parent_name, _, attr = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, new)
    return root


def refill(container: nn.Sequential, children: list[nn.Module]) -> None:
    """Replace a Sequential's children in place, renumbered (keeps the container's own class)."""
    for key in [name for name, _ in container.named_children()]:
        delattr(container, key)
    for index, child in enumerate(children):
        container.add_module(str(index), child)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def has_parameters(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


@dataclass(slots=True)
class Call:
    """One module's first call in a forward pass, in call order."""

    module: nn.Module
    order: int
    in_shape: tuple[int, ...] | None
    out_shape: tuple[int, ...] | None


def record_calls(model: nn.Module, run_forward: Callable[[nn.Module], Any]) -> dict[int, Call]:
    """id(module) -> its first call (order, input and output shapes), from one forward pass."""
    calls: dict[int, Call] = {}

    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if id(module) not in calls:
            first_in = args[0] if args and isinstance(args[0], torch.Tensor) else None
            out = output if isinstance(output, torch.Tensor) else None
            calls[id(module)] = Call(module, len(calls), _shape(first_in), _shape(out))

    _forward_with_hook(model, list(model.modules()), hook, run_forward)
    return calls


def _shape(tensor: torch.Tensor | None) -> tuple[int, ...] | None:
    return tuple(tensor.shape) if tensor is not None else None


def module_names(model: nn.Module) -> dict[int, str]:
    """id(module) -> its first dotted name."""
    names: dict[int, str] = {}
    for name, module in model.named_modules():
        names.setdefault(id(module), name or type(module).__name__)
    return names


def summarize_names(names: list[str]) -> str:
    """'a, b, c' for a few names, 'first … last (n modules)' for many."""
    if len(names) <= 3:
        return ", ".join(names)
    return span(names)


def like(new: ModuleT, reference: nn.Module) -> ModuleT:
    """Move a new module to the reference module's device and floating dtype."""
    param = next(reference.parameters(), None)
    return new.to(device=param.device, dtype=param.dtype) if param is not None else new


def call_sequence(model: nn.Module, run_forward: Callable[[nn.Module], Any]) -> list[nn.Module]:
    """Every call of a leaf module (one with no children) in one forward pass, in order."""
    sequence: list[nn.Module] = []

    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        sequence.append(module)

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    _forward_with_hook(model, leaves, hook, run_forward)
    return sequence


def _forward_with_hook(
    model: nn.Module,
    modules: list[nn.Module],
    hook: Callable[..., None],
    run_forward: Callable[[nn.Module], Any],
) -> None:
    """One gradient-free forward pass with `hook` on `modules`, always removed afterwards."""
    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        with torch.no_grad():
            run_forward(model)
    finally:
        for handle in handles:
            handle.remove()
