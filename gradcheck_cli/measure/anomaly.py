"""Name the forward operation where a gradient first turns non-finite.

Run only when the probe saw NaN/inf. One batch is re-run. First, a TorchFunctionMode
watches the forward pass for an op that makes NaN/inf out of finite inputs (log of
zero, division by zero): when there is one, it is the origin. Otherwise, with anomaly
detection on, so
every autograd node keeps the traceback of the forward call that created it; a hook on
every node of the graph records the first node, in backward execution order, that gets
finite gradients in and gives non-finite gradients out (log of zero, sqrt at zero,
division by zero). torch's own `check_nan` would only catch NaN, and only where it
first appears as NaN: an inf from sqrt'(0) turns into NaN several nodes later.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from gradcheck_cli.load.source import frame_owner, relative, user_caller
from gradcheck_cli.records.stats import SourceRef


@dataclass(frozen=True, slots=True, kw_only=True)
class NonfiniteOrigin:
    op: str
    """The forward operation, e.g. 'sqrt' (from the autograd node SqrtBackward0)."""
    node: str
    source: SourceRef | None


class _FirstNonfiniteForward(TorchFunctionMode):
    """Records the first forward op that makes NaN/inf out of finite inputs (log(0), x/0)."""

    def __init__(self) -> None:
        super().__init__()
        self.origin: NonfiniteOrigin | None = None

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if self.origin is None and _nonfinite(out) and not any(_nonfinite(a) for a in _flat(args, kwargs)):
            name = getattr(func, "__name__", str(func)).rstrip("_")
            self.origin = NonfiniteOrigin(op=name, node="forward", source=_caller(sys._getframe(1)))
        return out


def _flat(args: Any, kwargs: Any) -> list[Any]:
    items = list(args) + list((kwargs or {}).values())
    return [x for item in items for x in (item if isinstance(item, (list, tuple)) else (item,))]


def _nonfinite(value: Any) -> bool:
    return (
        isinstance(value, torch.Tensor)
        and value.is_floating_point()
        and value.numel() > 0
        and not bool(torch.isfinite(value.detach()).all())
    )


def _caller(frame: FrameType | None) -> SourceRef | None:
    """The user's line that called the op (None when gradcheck's own code did: the loss it computed)."""
    user = user_caller(frame, within=("torch", "torch.nn"))
    return relative(SourceRef(file=user.f_code.co_filename, line=user.f_lineno)) if user else None


def find_origin(run_loss: Callable[[], torch.Tensor]) -> NonfiniteOrigin | None:
    """Re-run forward and backward; None when nothing turns non-finite.

    A forward op that makes NaN/inf out of finite inputs is the origin when there is one;
    otherwise the backward node that first turns finite gradients non-finite.
    """
    found: list[torch.autograd.graph.Node] = []
    forward = _FirstNonfiniteForward()
    with warnings.catch_warnings(), torch.autograd.set_detect_anomaly(True, check_nan=False):
        warnings.simplefilter("ignore")
        with forward:
            loss = run_loss()
        if forward.origin is not None:
            return forward.origin
        if loss.grad_fn is None:
            return None
        handles = [node.register_hook(_watch(node, found)) for node in _graph(loss.grad_fn)]
        try:
            loss.backward()
        finally:
            for handle in handles:
                handle.remove()
    if not found:
        return None
    node = found[0]
    name = type(node).__name__ if not hasattr(node, "name") else node.name()
    return NonfiniteOrigin(op=_op_name(name), node=name, source=_user_frame(node))


def _graph(root: torch.autograd.graph.Node) -> Iterator[torch.autograd.graph.Node]:
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        stack.extend(child for child, _ in node.next_functions if child is not None)


def _watch(node: torch.autograd.graph.Node, found: list[torch.autograd.graph.Node]) -> Callable[..., None]:
    def hook(
        grad_inputs: tuple[torch.Tensor | None, ...], grad_outputs: tuple[torch.Tensor | None, ...]
    ) -> None:
        if found:
            return
        if _all_finite(grad_outputs) and not _all_finite(grad_inputs):
            found.append(node)

    return hook


def _all_finite(grads: tuple[torch.Tensor | None, ...]) -> bool:
    return all(g is None or bool(torch.isfinite(g).all()) for g in grads)


def _op_name(node_name: str) -> str:
    """SqrtBackward0 -> sqrt, AddmmBackward0 -> addmm."""
    base = node_name.split("Backward")[0]
    return base[:1].lower() + base[1:] if base else node_name


def _user_frame(node: torch.autograd.graph.Node) -> SourceRef | None:
    """The innermost frame of the forward traceback outside torch, when it is the user's code.

    None when that frame is gradcheck's own (the op is in the loss the tool computed).
    """
    metadata: Any = getattr(node, "metadata", None)
    trace = metadata.get("traceback_") if isinstance(metadata, dict) else None
    if not trace:
        return None
    frames = trace if isinstance(trace, list) else str(trace).splitlines()
    for text in reversed([str(f) for f in frames]):
        ref = _parse_frame(text)
        # This module's own frames appear when the forward ran under the watching mode.
        if ref is None or frame_owner(ref.file) in ("torch", "torch.nn") or ref.file == __file__:
            continue
        return None if frame_owner(ref.file) == "gradcheck" else relative(ref)
    return None


def _parse_frame(text: str) -> SourceRef | None:
    # traceback.format_stack lines: '  File "/path/model.py", line 12, in forward\n    code\n'
    for line in text.splitlines():
        line = line.strip()
        if line.startswith('File "') and '", line ' in line:
            file, rest = line[len('File "') :].split('", line ', 1)
            number = rest.split(",", 1)[0]
            return SourceRef(file=file, line=int(number) if number.isdigit() else None)
    return None
