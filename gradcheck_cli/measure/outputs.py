"""What a model's output holds: the main tensor, auxiliary heads trained beside it, and the rest.

Training scripts take a loss on more than the first tensor when a model has auxiliary heads:
GoogLeNet's `aux_logits1/2` (weighted 0.3 each, the GoogLeNet paper's weight), torchvision's
segmentation models' `{"out", "aux"}` (its reference script adds `0.5 * aux`), deep-supervision
lists of same-shape outputs. The loss includes those the same way; every other float tensor of
the output is *left out*, named, so a layer that feeds only such an output is reported as
left out by the loss, not as a graph bug.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gradcheck_cli.records.stats import LeftOutOutputs

MAIN_KEYS = ("logits", "output", "out", "prediction", "recon")
AUX_WEIGHT = 0.3
"""An auxiliary classifier's weight (GoogLeNet: 0.3 each); also same-shape extra outputs."""
SEGMENTATION_AUX_WEIGHT = 0.5
"""torchvision's segmentation reference: losses['out'] + 0.5 * losses['aux']."""


@dataclass(frozen=True, slots=True, eq=False)
class Head:
    """One tensor of the output, by the name a user would recognise ('aux_logits1', 'output[1]')."""

    name: str
    tensor: torch.Tensor
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class OutputParts:
    main: Head | None
    aux: tuple[Head, ...] = ()
    left_out: tuple[Head, ...] = ()

    def describe_aux(self) -> str:
        """'; plus aux_logits2, aux_logits1 weighted 0.3 each' for the loss reason, or ''."""
        if not self.aux:
            return ""
        weights = {h.weight for h in self.aux}
        weight = f"{weights.pop():g} each" if len(weights) == 1 else "as their scripts weight them"
        return f"; plus the auxiliary outputs {', '.join(h.name for h in self.aux)} weighted {weight}"


def split_output(output: Any) -> OutputParts:
    """Main tensor, auxiliary heads included in the loss, and float tensors the loss leaves out."""
    if isinstance(output, torch.Tensor):
        return OutputParts(main=Head("output", output))
    named = _named_items(output)
    if named is not None:
        return _split_named(named)
    if isinstance(output, (tuple, list)):
        return _split_sequence(list(_flat(output, "output")))
    return OutputParts(main=None)


def _named_items(output: Any) -> list[tuple[str, Any]] | None:
    """(name, value) pairs of a dict, a namedtuple or a ModelOutput-like object; None otherwise."""
    if isinstance(output, dict):
        return [(str(k), v) for k, v in output.items()]
    fields = getattr(output, "_fields", None)
    if isinstance(output, tuple) and fields:
        return list(zip(fields, output, strict=False))
    if hasattr(output, "logits"):
        return [(k, v) for k, v in vars(output).items() if not k.startswith("_")]
    return None


def _split_named(items: list[tuple[str, Any]]) -> OutputParts:
    tensors = [(n, v) for n, v in items if _is_float(v) and v.dim() > 0]
    main_name = next((k for k in MAIN_KEYS for n, _ in tensors if n == k), None)
    main_name = main_name or next((n for n, _ in tensors if "aux" not in n.lower()), None)
    if main_name is None:
        return OutputParts(main=None)
    main = Head(main_name, dict(tensors)[main_name])
    aux, left_out = [], []
    for name, value in tensors:
        if name == main_name:
            continue
        if "aux" in name.lower() and value.shape == main.tensor.shape:
            weight = SEGMENTATION_AUX_WEIGHT if name == "aux" else AUX_WEIGHT
            aux.append(Head(name, value, weight))
        elif value.requires_grad:
            left_out.append(Head(name, value))
    return OutputParts(main=main, aux=tuple(aux), left_out=tuple(left_out))


def _split_sequence(heads: list[Head]) -> OutputParts:
    """(logits, aux1, aux2) or a deep-supervision list: same-shape tensors are heads of one task."""
    floats = [h for h in heads if _is_float(h.tensor)]
    if not floats:
        return OutputParts(main=None)
    main, rest = floats[0], floats[1:]
    same = [h for h in rest if h.tensor.shape == main.tensor.shape and h.tensor.requires_grad]
    aux = tuple(Head(h.name, h.tensor, AUX_WEIGHT) for h in same)
    left_out = tuple(h for h in rest if all(h is not s for s in same) and h.tensor.requires_grad)
    return OutputParts(main=main, aux=aux, left_out=left_out)


def _flat(value: Any, name: str) -> Iterator[Head]:
    if isinstance(value, torch.Tensor):
        yield Head(name, value)
    elif isinstance(value, (tuple, list)):
        for index, item in enumerate(value):
            yield from _flat(item, f"{name}[{index}]")


def _is_float(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.is_floating_point()


# ---------------------------------------------------------------------------- who feeds what


def left_out_feeders(model: nn.Module, loss: torch.Tensor, left_out: Iterable[Head]) -> LeftOutOutputs | None:
    """Walk the graph (no computation): modules reached from a left-out output but not from the loss."""
    left = list(left_out)
    if not left:
        return None
    from_loss = _parameters_reached([loss])
    from_left = _parameters_reached([h.tensor for h in left]) - from_loss
    modules = tuple(
        name
        for name, module in model.named_modules()
        if any(id(p) in from_left for p in module.parameters(recurse=False))
    )
    return LeftOutOutputs(outputs=tuple(h.name for h in left), modules=modules)


def _parameters_reached(roots: list[torch.Tensor]) -> set[int]:
    """ids of the leaf tensors (parameters) whose AccumulateGrad nodes the roots' graphs reach."""
    stack: list[Any] = [t.grad_fn for t in roots if t.grad_fn is not None]
    found = {id(t) for t in roots if t.grad_fn is None and t.requires_grad}
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        variable = getattr(node, "variable", None)
        if variable is not None:
            found.add(id(variable))
        stack.extend(next_node for next_node, _ in node.next_functions)
    return found
