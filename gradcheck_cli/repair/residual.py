"""residual: wrap runs of same-shape blocks in identity skip connections (x + block(x)).

In an nn.Sequential a block is a child with parameters plus the parameter-free children
(activations, dropout) and norms that follow it; in an nn.ModuleList every element is a
block. A block whose output has its input's shape, next to another such block, gets a skip.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from gradcheck_cli.measure.layer_kinds import NORM_LAYERS
from gradcheck_cli.repair.base import (
    Call,
    Change,
    NotApplicable,
    RepairContext,
    has_parameters,
    module_names,
    record_calls,
    refill,
    summarize_names,
)

MIN_RUN = 2


class Residual(nn.Module):
    """x + body(x): an identity path around a block whose output has the input's shape."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        return x + self.body(x, *args, **kwargs)


def add_skips(model: nn.Module, context: RepairContext) -> Change:
    calls = record_calls(model, context.run_forward)
    names = module_names(model)
    wrapped: list[str] = []
    inside: set[int] = set()  # modules already under a new skip: their containers are left alone
    for container in [m for m in model.modules() if isinstance(m, (nn.Sequential, nn.ModuleList))]:
        if id(container) in inside:
            continue
        blocks = _blocks(container)
        chosen = [block for run in _same_shape_runs(blocks, calls) for block in run]
        for block in chosen:
            inside.update(id(m) for part in block for m in part.modules())
            wrapped.append(names[id(block[0])])
        if chosen:
            _wrap(container, blocks, chosen)
    if not wrapped:
        raise NotApplicable(
            "no run of same-shape blocks in an nn.Sequential or nn.ModuleList to put skips around"
        )
    note = f"wrapped {len(wrapped)} same-shape blocks in identity skips (x + block(x))"
    return Change(model=model, where=summarize_names(wrapped), note=note)


def _blocks(container: nn.Module) -> list[list[nn.Module]]:
    children = list(container.children())
    if isinstance(container, nn.ModuleList):
        return [[child] for child in children]
    blocks: list[list[nn.Module]] = []
    for child in children:
        starts_block = has_parameters(child) and not isinstance(child, NORM_LAYERS)
        if starts_block or not blocks:
            blocks.append([child])
        else:
            blocks[-1].append(child)
    return blocks


def _same_shape_runs(blocks: list[list[nn.Module]], calls: dict[int, Call]) -> list[list[list[nn.Module]]]:
    runs: list[list[list[nn.Module]]] = [[]]
    for block in blocks:
        if _keeps_shape(block, calls):
            runs[-1].append(block)
        elif runs[-1]:
            runs.append([])
    return [run for run in runs if len(run) >= MIN_RUN]


def _keeps_shape(block: list[nn.Module], calls: dict[int, Call]) -> bool:
    first, last = calls.get(id(block[0])), calls.get(id(block[-1]))
    if first is None or last is None or not has_parameters(block[0]):
        return False
    return first.in_shape is not None and first.in_shape == last.out_shape


def _wrap(container: nn.Module, blocks: list[list[nn.Module]], chosen: list[list[nn.Module]]) -> None:
    in_run = {id(block[0]) for block in chosen}
    if isinstance(container, nn.ModuleList):
        for index, child in enumerate(list(container)):
            if id(child) in in_run:
                container[index] = Residual(child)
        return
    children: list[nn.Module] = []
    for block in blocks:
        if id(block[0]) in in_run:
            children.append(Residual(block[0] if len(block) == 1 else nn.Sequential(*block)))
        else:
            children.extend(block)
    assert isinstance(container, nn.Sequential)
    refill(container, children)
