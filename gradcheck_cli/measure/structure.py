"""What the autograd graph says about a model's structure (for advice that matches it)."""

from __future__ import annotations

from typing import Any

import torch

ADD_NODES = ("AddBackward0", "AddBackward1")
BRANCH_REACH = 256
"""Graph nodes searched along one branch: a residual branch is a few dozen ops long."""


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
