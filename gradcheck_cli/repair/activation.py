"""activation / leaky-relu: swap saturating (or dying) activation modules, then He-initialise.

The Linear/Conv layer that runs just before each swapped activation is re-initialised with
He (kaiming_normal_) init, the scale that keeps a ReLU network's signal steady; keeping the
sigmoid-era init would leave the new network's gain off by the old activation's slope.
Functional calls (torch.sigmoid inside forward) are not modules and are not swapped.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from gradcheck_cli.records.text import count
from gradcheck_cli.repair.base import (
    WEIGHT_LAYERS,
    Change,
    NotApplicable,
    RepairContext,
    call_sequence,
    module_names,
    replace_module,
    summarize_names,
)

SATURATING = (nn.Sigmoid, nn.Tanh)
DYING = (nn.ReLU, nn.ReLU6)
LEAKY_SLOPE = 0.01


def to_relu(model: nn.Module, context: RepairContext) -> Change:
    return _swap(model, context, SATURATING, nn.ReLU, slope=0.0)


def to_leaky_relu(model: nn.Module, context: RepairContext) -> Change:
    return _swap(model, context, DYING, lambda: nn.LeakyReLU(LEAKY_SLOPE), slope=LEAKY_SLOPE)


def _swap(
    model: nn.Module,
    context: RepairContext,
    old_types: tuple[type[nn.Module], ...],
    make: Callable[[], nn.Module],
    slope: float,
) -> Change:
    targets = [(n, m) for n, m in model.named_modules(remove_duplicate=False) if type(m) in old_types]
    if not targets:
        kinds = "/".join(t.__name__ for t in old_types)
        raise NotApplicable(f"no {kinds} modules to swap (functional calls in forward are not rewritten)")
    before = preceding_layers(model, context, {id(m) for _, m in targets})
    names = module_names(model)
    for name, _ in targets:
        model = replace_module(model, name, make())
    for layer in before:
        he_init(layer, slope)
    old_names = sorted({type(m).__name__ for _, m in targets})
    new_name = type(make()).__name__
    note = (
        f"replaced {len(targets)} {'/'.join(old_names)} with {new_name}; He-initialised the "
        f"{count(len(before), 'layer')} before {'it' if len(targets) == 1 else 'them'}"
    )
    where = summarize_names([names[id(layer)] for layer in before] or [n for n, _ in targets])
    return Change(model=model, where=where, note=note)


def preceding_layers(model: nn.Module, context: RepairContext, activation_ids: set[int]) -> list[nn.Module]:
    """The Linear/Conv that ran last before each of the given activations, in call order."""
    found: dict[int, nn.Module] = {}
    last_weight: nn.Module | None = None
    for module in call_sequence(model, context.run_forward):
        if isinstance(module, WEIGHT_LAYERS):
            last_weight = module
        elif id(module) in activation_ids and last_weight is not None:
            found.setdefault(id(last_weight), last_weight)
    return list(found.values())


def he_init(layer: nn.Module, slope: float) -> None:
    with torch.no_grad():
        weight = getattr(layer, "weight", None)
        if isinstance(weight, torch.Tensor):
            nn.init.kaiming_normal_(weight, a=slope, nonlinearity="leaky_relu")
        bias = getattr(layer, "bias", None)
        if isinstance(bias, torch.Tensor):
            nn.init.zeros_(bias)
