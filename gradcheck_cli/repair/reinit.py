"""init: rescale each layer's initial weights so the measured backward gain per layer is near 1.

Layer-sequential, in the spirit of LSUV init (Mishkin & Matas, 2016), but on the backward
signal the finding measured: going from the input up, the gain across the boundary between
weight layers i-1 and i is ||dL/d out_{i-1}|| / ||dL/d out_i||. It is linear in W_i (the
gradient reaches out_{i-1} through W_i), so W_i is scaled by 1/gain and the gain measured
again. Layers below i are already fixed, so each boundary is settled once.
"""

from __future__ import annotations

import math

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
    summarize_names,
)

ROUNDS = 3
"""Measurements per boundary: the gain also moves through the activations' slopes."""
TOLERANCE = 0.05
"""Stop once |log10(gain)| is below this (gain within about 12% of 1)."""
MAX_STEP = 10.0
"""Largest factor one round may apply, so a bad measurement cannot wreck a layer."""


def unit_gain_init(model: nn.Module, context: RepairContext) -> Change:
    layers = _single_call_weight_layers(model, context)
    if len(layers) < 2:
        raise NotApplicable("fewer than two Linear/Conv layers that run once per forward to balance")
    factors = [1.0] * len(layers)
    for index in range(1, len(layers)):
        factors[index] = _balance(model, context, layers, index)
    names = module_names(model)
    changed = [
        names[id(layer)] for layer, f in zip(layers, factors, strict=True) if abs(math.log10(f)) > 1e-3
    ]
    if not changed:
        raise NotApplicable("every layer's backward gain is already near 1 at this batch")
    low, high = min(factors), max(factors)
    note = (
        f"rescaled the weights of {len(changed)} of {count(len(layers), 'layer')} by x{low:.3g} to x{high:.3g} "
        f"so each layer's backward gain is near 1 (measured on the first batch)"
    )
    return Change(model=model, where=summarize_names(changed), note=note)


def _single_call_weight_layers(model: nn.Module, context: RepairContext) -> list[nn.Module]:
    sequence = call_sequence(model, context.run_forward)
    counts: dict[int, int] = {}
    for module in sequence:
        counts[id(module)] = counts.get(id(module), 0) + 1
    ordered: dict[int, nn.Module] = {}
    for module in sequence:
        if isinstance(module, WEIGHT_LAYERS) and counts[id(module)] == 1:
            ordered.setdefault(id(module), module)
    return list(ordered.values())


def _balance(model: nn.Module, context: RepairContext, layers: list[nn.Module], index: int) -> float:
    """Scale layers[index]'s weight until the gain across its input boundary is near 1."""
    total = 1.0
    for _ in range(ROUNDS):
        norms = output_grad_norms(model, context, layers[index - 1 : index + 1])
        lower, upper = norms
        if not (lower > 0 and upper > 0 and math.isfinite(lower) and math.isfinite(upper)):
            break
        gain = lower / upper
        if abs(math.log10(gain)) < TOLERANCE:
            break
        factor = min(MAX_STEP, max(1.0 / MAX_STEP, 1.0 / gain))
        with torch.no_grad():
            layers[index].weight.mul_(factor)  # type: ignore[operator]
        total *= factor
    return total


def output_grad_norms(model: nn.Module, context: RepairContext, layers: list[nn.Module]) -> list[float]:
    """L2 norm of dL/d(output) of each given layer, from one backward pass of the first batch."""
    grads: dict[int, torch.Tensor] = {}

    def forward_hook(module: nn.Module, args: object, output: object) -> None:
        if isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(lambda grad: grads.__setitem__(id(module), grad.detach().float().norm()))

    handles = [layer.register_forward_hook(forward_hook) for layer in layers]
    try:
        context.run_backward(model)
    finally:
        for handle in handles:
            handle.remove()
        model.zero_grad(set_to_none=True)
    return [float(grads[id(layer)]) if id(layer) in grads else math.nan for layer in layers]
