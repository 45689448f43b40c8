"""What the autograd graph says about a model's structure (for advice that matches it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

ADD_NODES = ("AddBackward0", "AddBackward1")
BRANCH_REACH = 256
"""Graph nodes searched along one branch: a residual branch is a few dozen ops long."""
PASS_THROUGH = frozenset(
    {
        "ExpandBackward0", "ViewBackward0", "UnsafeViewBackward0", "ReshapeAliasBackward0",
        "SliceBackward0", "SelectBackward0", "UnsqueezeBackward0", "SqueezeBackward0",
        "SqueezeBackward1", "SqueezeBackward2", "SqueezeBackward3", "SqueezeBackward4",
        "TBackward0", "TransposeBackward0", "TransposeBackward1", "PermuteBackward0",
        "CloneBackward0", "ToCopyBackward0", "AliasBackward0", "RepeatBackward0",
        "IndexBackward0", "NarrowBackward0", "SplitBackward0", "SplitWithSizesBackward0",
        "UnbindBackward0", "ContiguousBackward0",
    }
)  # fmt: skip
"""Ops that move a parameter's values without changing them: looked through to the op that uses them."""
ADDING = frozenset(
    {"AddBackward0", "AddBackward1", "SubBackward0", "SubBackward1", "RsubBackward0",
     "RsubBackward1", "CatBackward0", "StackBackward0", "EmbeddingBackward0", "EmbeddingBagBackward0"}
)  # fmt: skip
"""Ops through which a zero parameter closes no path: a sum, a concatenation, a table lookup.
Every other op (a product, a matmul, a convolution, a norm, anything unknown) may gate."""


def has_residual_add(loss: torch.Tensor, limit: int = 100_000) -> bool:
    """True when the graph holds an x + f(x): an add one of whose inputs lies in the history of
    the other (a skip connection), as opposed to adding a bias, an embedding or a mask."""
    start = loss.grad_fn
    if start is None:
        return False
    seen, stack = {start}, [start]
    while stack and len(seen) < limit:
        node = stack.pop()
        if type(node).__name__ in ADD_NODES and _is_skip(node):
            return True
        for child, _ in node.next_functions:
            if child is not None and child not in seen:
                seen.add(child)
                stack.append(child)
    return False


def _is_skip(node: Any) -> bool:
    inputs = [child for child, _ in node.next_functions if child is not None]
    if len(inputs) != 2 or inputs[0] is inputs[1]:
        return False
    a, b = inputs
    return _reaches(a, b) or _reaches(b, a)


def _reaches(source: Any, target: Any) -> bool:
    seen, stack = {source}, [source]
    while stack and len(seen) < BRANCH_REACH:
        node = stack.pop()
        if node is target:
            return True
        for child, _ in node.next_functions:
            if child is not None and child not in seen:
                seen.add(child)
                stack.append(child)
    return False


def multiplied(loss: torch.Tensor, named: Sequence[tuple[str, torch.Tensor]]) -> list[str]:
    """The names of the leaf tensors in `named` that some op of `loss`'s graph may multiply by:
    the first op using each (looking through PASS_THROUGH ops) is one outside ADDING. A leaf the
    graph does not use is not listed."""
    wanted = {id(tensor): name for name, tensor in named}
    users: dict[Any, list[Any]] = {}
    leaves: dict[str, Any] = {}
    seen, stack = {loss.grad_fn}, [loss.grad_fn]
    while stack:
        node = stack.pop()
        for child, _ in node.next_functions if node is not None else ():
            if child is None:
                continue
            users.setdefault(child, []).append(node)
            variable = getattr(child, "variable", None)
            if variable is not None and id(variable) in wanted:
                leaves[wanted[id(variable)]] = child
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return [name for name, leaf in leaves.items() if _multiplied(leaf, users)]


def _multiplied(leaf: Any, users: dict[Any, list[Any]]) -> bool:
    seen, stack = {leaf}, [leaf]
    while stack:
        for user in users.get(stack.pop(), ()):
            kind = type(user).__name__
            if kind in PASS_THROUGH:
                if user not in seen:
                    seen.add(user)
                    stack.append(user)
            elif kind not in ADDING:
                return True
    return False
