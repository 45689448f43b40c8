"""batchnorm / layernorm: insert a normalisation layer after each Linear/Conv of a stack.

nn.Sequential stacks are edited in place: after every Linear/Conv child that is not the
stack's last (the last is usually the output head, whose scale the loss needs) and is not
already followed by a norm. Weight layers outside Sequentials (ModuleList loops, layers
called by name in forward) are reached through torch.fx where the forward can be traced.
"""

from __future__ import annotations

from torch import fx, nn

from gradcheck_cli.measure.layer_kinds import NORM_LAYERS, is_conv
from gradcheck_cli.repair.base import (
    WEIGHT_LAYERS,
    Call,
    Change,
    NotApplicable,
    RepairContext,
    like,
    module_names,
    record_calls,
    refill,
    summarize_names,
)

BATCH_NORMS: dict[int, type[nn.Module]] = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def add_batchnorm(model: nn.Module, context: RepairContext) -> Change:
    return _normalize(model, context, "batchnorm")


def add_layernorm(model: nn.Module, context: RepairContext) -> Change:
    return _normalize(model, context, "layernorm")


def norm_for(layer: nn.Module, call: Call | None, kind: str) -> nn.Module | None:
    """The norm to put after `layer` given its output shape; None where none fits."""
    out_shape = call.out_shape if call else None
    if out_shape is None:
        return None
    if isinstance(layer, nn.Linear):
        if kind == "layernorm":
            return like(nn.LayerNorm(layer.out_features), layer)
        # BatchNorm1d reads dim 1 as channels: right for (N, C) only, not (N, L, C).
        return like(nn.BatchNorm1d(layer.out_features), layer) if len(out_shape) == 2 else None
    if is_conv(layer):
        channels = int(layer.out_channels)
        if kind == "layernorm":
            # LayerNorm over (C, H, W) with a per-channel affine: GroupNorm with one group.
            return like(nn.GroupNorm(1, channels), layer)
        norm_type = BATCH_NORMS.get(len(out_shape) - 2)
        return like(norm_type(channels), layer) if norm_type else None
    return None


def _normalize(model: nn.Module, context: RepairContext, kind: str) -> Change:
    calls = record_calls(model, context.run_forward)
    ran = sorted((c for c in calls.values() if isinstance(c.module, WEIGHT_LAYERS)), key=lambda c: c.order)
    in_stacks = {id(child) for seq in _sequentials(model) for child in seq}
    outside = [c for c in ran[:-1] if id(c.module) not in in_stacks]
    if not outside:
        return _normalize_sequentials(model, calls, kind)
    try:
        return _normalize_traced(model, calls, kind)
    except NotApplicable:
        raise
    except Exception as exc:  # torch.fx raises many types on untraceable forwards
        reason = f"torch.fx could not trace forward ({type(exc).__name__}: {_first_line(exc)})"
    if any(id(c.module) in in_stacks for c in ran):
        change = _normalize_sequentials(model, calls, kind)
        return Change(model=change.model, where=change.where, note=f"{change.note}; {reason}, so only these")
    raise NotApplicable(reason)


def _sequentials(model: nn.Module) -> list[nn.Sequential]:
    return [m for m in model.modules() if isinstance(m, nn.Sequential)]


def _normalize_sequentials(model: nn.Module, calls: dict[int, Call], kind: str) -> Change:
    names = module_names(model)
    after: list[str] = []
    skipped = convs = 0
    for seq in _sequentials(model):
        children = list(seq)
        rebuilt: list[nn.Module] = []
        for index, child in enumerate(children):
            rebuilt.append(child)
            following = children[index + 1] if index + 1 < len(children) else None
            if (
                following is None
                or not isinstance(child, WEIGHT_LAYERS)
                or isinstance(following, NORM_LAYERS)
            ):
                continue
            norm = norm_for(child, calls.get(id(child)), kind)
            if norm is None:
                skipped += 1
                continue
            rebuilt.append(norm)
            after.append(names[id(child)])
            convs += isinstance(norm, nn.GroupNorm)
        if len(rebuilt) != len(children):
            refill(seq, rebuilt)
    return _change(model, after, skipped, kind, "nn.Sequential", convs)


def _normalize_traced(model: nn.Module, calls: dict[int, Call], kind: str) -> Change:
    graph_module = fx.symbolic_trace(model)
    modules = dict(graph_module.named_modules())
    nodes = [
        n
        for n in graph_module.graph.nodes
        if n.op == "call_module" and isinstance(modules.get(str(n.target)), WEIGHT_LAYERS)
    ]
    after: list[str] = []
    skipped = convs = 0
    for number, node in enumerate(nodes[:-1]):
        layer = modules[str(node.target)]
        if any(
            u.op == "call_module" and isinstance(modules.get(str(u.target)), NORM_LAYERS) for u in node.users
        ):
            continue
        norm = norm_for(layer, calls.get(id(layer)), kind)
        if norm is None:
            skipped += 1
            continue
        _insert_after(graph_module, node, norm, f"gradcheck_norm_{number}")
        after.append(str(node.target))
        convs += isinstance(norm, nn.GroupNorm)
    graph_module.recompile()
    return _change(graph_module, after, skipped, kind, "torch.fx", convs)


def _insert_after(graph_module: fx.GraphModule, node: fx.Node, norm: nn.Module, name: str) -> None:
    graph_module.add_submodule(name, norm)
    with graph_module.graph.inserting_after(node):
        normed = graph_module.graph.call_module(name, (node,))
    node.replace_all_uses_with(normed, delete_user_cb=lambda user: user is not normed)


def _change(model: nn.Module, after: list[str], skipped: int, kind: str, how: str, convs: int = 0) -> Change:
    if not after:
        raise NotApplicable(
            f"no Linear/Conv inside a stack to put a {kind} layer after"
            + (f" ({skipped} had output shapes no {kind} layer fits)" if skipped else "")
        )
    norm_name = "LayerNorm" if kind == "layernorm" else "BatchNorm"
    if convs:
        norm_name += " (GroupNorm(1, C), LayerNorm over C, H, W, after convolutions)"
    note = f"inserted {norm_name} after {len(after)} Linear/Conv layers ({how})"
    if skipped:
        note += f"; skipped {skipped} whose output shape it does not fit"
    return Change(model=model, where=summarize_names(after), note=note)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:120] if lines else ""
