"""Which modules `gradcheck scale` follows, and each one's role, read from how its weight's
dimensions change with width: fan-in fixed and fan-out growing is an input (embedding) layer,
both growing a hidden matrix, fan-in growing and fan-out fixed a readout. Normalisations and
modules with only vector parameters are `norm`; attention blocks (nn.MultiheadAttention, or a
class named like one) are `attention`, measured at their output."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from gradcheck_cli.measure.layer_kinds import NORM_LAYERS


@dataclass(frozen=True, slots=True)
class Shape:
    kind: str
    fan_in: int
    """0 for modules without a weight matrix."""
    fan_out: int
    group: str
    """attention, norm or matrix."""


def is_attention(module: nn.Module) -> bool:
    return isinstance(module, nn.MultiheadAttention) or "attention" in type(module).__name__.lower()


def select_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Modules with parameters of their own, and attention blocks; the root only when it is the
    model's one layer."""
    chosen = {
        name: module
        for name, module in model.named_modules()
        if name and (is_attention(module) or any(True for _ in module.parameters(recurse=False)))
    }
    return chosen or {"(model)": model}


def classify(module: nn.Module) -> Shape:
    kind = type(module).__name__
    if is_attention(module):
        return Shape(kind, 0, 0, "attention")
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        return Shape(kind, module.num_embeddings, module.embedding_dim, "matrix")
    matrix = next((p for p in module.parameters(recurse=False) if p.dim() >= 2), None)
    if isinstance(module, NORM_LAYERS) or matrix is None:
        return Shape(kind, 0, 0, "norm")
    return Shape(kind, math.prod(matrix.shape[1:]), matrix.shape[0], "matrix")


def role_of(shapes: Sequence[Shape]) -> str:
    """The role from one module's shape at every width of the sweep."""
    group = shapes[0].group
    if group != "matrix":
        return group
    fan_in_grows = len({s.fan_in for s in shapes}) > 1
    fan_out_grows = len({s.fan_out for s in shapes}) > 1
    if fan_in_grows:
        return "hidden" if fan_out_grows else "readout"
    return "input" if fan_out_grows else "fixed"
