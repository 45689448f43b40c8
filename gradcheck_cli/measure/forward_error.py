"""A forward pass that raises, said the way the user can act on it.

    Net.forward (model.py:18): self.fc(...) raised RuntimeError: mat1 and mat2 shapes cannot be
    multiplied (4x512 and 256x10)
      in fc: Linear(256 -> 10), got 512 features (float32[4x512])
      inputs tried (sample_batch() in the model file): (float32[4x3x32x32])

The user's frame is the innermost traceback frame in the user's code (`source.is_user_frame`);
the module is the innermost nn.Module of the model whose forward was running when it raised, and
the tensor it got is read from that frame.
The hint fits where the inputs came from: given inputs (sample_batch(), --input, analyze()) point
at a bug in the model; inputs gradcheck inferred point at --input.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import linecache
import re
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import torch
from torch import nn

from gradcheck_cli.load.source import is_user_frame
from gradcheck_cli.measure.compat import ConvNd


@dataclass(frozen=True, slots=True)
class UserFrame:
    function: str
    """`Net.forward`."""
    where: str
    """`model.py:18`."""
    call: str
    """What raised on that line: `self.fc(...)`, else the line itself."""


@dataclass(frozen=True, slots=True)
class RaisingModule:
    text: str
    """`fc: Linear(256 -> 10), got 512 features (float32[4x512])`."""
    got: torch.Tensor | None
    """The tensor it was called with."""


def describe_failure(exc: BaseException, model: nn.Module) -> tuple[UserFrame | None, str | None]:
    """The user's frame that raised, and `fc: Linear(256 -> 10), got 512 features` when a
    submodule of the model was running."""
    user, module = _failure(exc, model)
    return user, module.text if module else None


def _failure(exc: BaseException, model: nn.Module) -> tuple[UserFrame | None, RaisingModule | None]:
    frames = list(_frames(exc.__traceback__))
    user = next((_user_frame(f, lasti) for f, lasti in reversed(frames) if is_user_frame(f)), None)
    return user, _raising_module(frames, model)


def is_inferred(origin: str) -> bool:
    return origin.startswith("inferred")


def _frames(tb: TracebackType | None) -> list[tuple[FrameType, int]]:
    out = []
    while tb is not None:
        out.append((tb.tb_frame, tb.tb_lasti))
        tb = tb.tb_next
    return out


def _user_frame(frame: FrameType, lasti: int) -> UserFrame:
    code = frame.f_code
    function = getattr(code, "co_qualname", None) or _qualname(frame)
    line = frame.f_lineno
    return UserFrame(
        function=function, where=f"{Path(code.co_filename).name}:{line}", call=_call_text(frame, lasti)
    )


def _qualname(frame: FrameType) -> str:
    owner = frame.f_locals.get("self")
    name = frame.f_code.co_name
    return f"{type(owner).__name__}.{name}" if owner is not None else name


def _call_text(frame: FrameType, lasti: int) -> str:
    """The call the raising instruction belongs to (`self.fc(...)`), from its column span (3.11+)."""
    code = frame.f_code
    line = linecache.getline(code.co_filename, frame.f_lineno).strip()
    positions = getattr(code, "co_positions", None)
    if positions is None:
        return line
    with contextlib.suppress(IndexError, ValueError, SyntaxError):
        start, end, col, end_col = list(positions())[lasti // 2]
        if start is not None and start == end and col is not None and end_col is not None:
            segment = linecache.getline(code.co_filename, start)[col:end_col]
            node = ast.parse(segment, mode="eval").body
            if isinstance(node, ast.Call):
                return f"{ast.unparse(node.func)}(...)"
            return segment
    return line


def _raising_module(frames: list[tuple[FrameType, int]], model: nn.Module) -> RaisingModule | None:
    names = {id(m): name for name, m in model.named_modules()}
    for frame, _ in reversed(frames):
        owner = frame.f_locals.get("self")
        if isinstance(owner, nn.Module) and id(owner) in names:
            name = names[id(owner)]
            if not name:
                return None  # the model's own forward: the user's frame says it all
            got = _first_tensor(frame)
            return RaisingModule(text=f"{name}: {_module_text(owner, got)}", got=got)
    return None


def _first_tensor(frame: FrameType) -> torch.Tensor | None:
    code = frame.f_code
    for arg in code.co_varnames[1 : code.co_argcount]:
        value = frame.f_locals.get(arg)
        if isinstance(value, torch.Tensor):
            return value
    return None


def _module_text(module: nn.Module, tensor: torch.Tensor | None) -> str:
    got = f" ({_shape(tensor)})" if tensor is not None else ""
    if isinstance(module, nn.Linear):
        size = f", got {tensor.shape[-1]} features" if tensor is not None and tensor.dim() else ""
        return f"Linear({module.in_features} -> {module.out_features}){size}{got}"
    if isinstance(module, ConvNd) and tensor is not None and tensor.dim() > 1:
        kind = type(module).__name__
        return f"{kind}({module.in_channels} -> {module.out_channels}), got {tensor.shape[1]} channels{got}"
    if isinstance(module, nn.Embedding) and tensor is not None and tensor.numel():
        top = int(tensor.max()) if not tensor.is_floating_point() else None
        seen = f", got indices up to {top}" if top is not None else f", got {_shape(tensor)}"
        return f"Embedding({module.num_embeddings} x {module.embedding_dim}){seen}"
    return f"{type(module).__name__}{got}"


def _shape(tensor: torch.Tensor) -> str:
    return f"{str(tensor.dtype).removeprefix('torch.')}[{'x'.join(map(str, tensor.shape))}]"


def forward_failure(
    exc: BaseException, model: nn.Module, origin: str, inputs: tuple[Any, ...]
) -> tuple[str, str]:
    """The error message (the user's frame, the module, the inputs) and a hint that fits `origin`."""
    user, module = _failure(exc, model)
    kind_text = f"{type(exc).__name__}: {_first_line(exc)}"
    head = f"{user.function} ({user.where}): {user.call} raised" if user else "the model's forward raised"
    lines = [f"{head} {kind_text}"]
    if module:
        lines.append(f"  in {module.text}")
    lines.append(f"  inputs tried ({origin}): {_describe(inputs)}")
    missing = none_argument(exc, model)
    if missing is not None:
        lines.append(f"  {missing} was None: the forward's optional argument {missing!r} was not given")
        return "\n".join(lines), _none_hint(missing)
    raw_input = module is not None and any(module.got is v for v in inputs)
    return "\n".join(lines), _hint(origin, user, module.text if module else None, raw_input)


def none_argument(exc: BaseException, model: nn.Module) -> str | None:
    """The optional argument whose None made the forward fail (`'NoneType' object has no attribute
    'device'` with `grid_thw=None`): a parameter of the model's forward that defaults to None, was
    left None, and appears on a raising line of the traceback (under its own or a callee's name)."""
    if "NoneType" not in str(exc) and "None" not in str(exc):
        return None
    optional = _optional_parameters(model)
    named_on_lines = []
    for frame, _ in reversed(_frames(exc.__traceback__)):
        line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
        code = frame.f_code
        params = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
        named_on_lines += [p for p in params if frame.f_locals.get(p, 0) is None and _mentions(line, p)]
    top = [name for name in named_on_lines if name in optional]
    return top[0] if top else (named_on_lines[0] if named_on_lines and optional else None)


def _optional_parameters(model: nn.Module) -> set[str]:
    with contextlib.suppress(TypeError, ValueError):
        params = inspect.signature(model.forward).parameters.values()
        return {p.name for p in params if p.default is None}
    return set()


def _mentions(line: str, name: str) -> bool:
    return re.search(rf"\b{re.escape(name)}\b", line) is not None


def _none_hint(name: str) -> str:
    return (
        f"gradcheck cannot invent {name!r}: define sample_batch() in the model file returning "
        f'{{"args": (inputs,), "kwargs": {{"{name}": ...}}}} (or a dict of keyword arguments with '
        f"{name!r} in it), or pass the model and batches to gradcheck_cli.analyze()"
    )


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return _shape(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_describe(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_describe(v) for v in value) + ")"
    return type(value).__name__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _hint(origin: str, user: UserFrame | None, module: str | None, raw_input: bool) -> str:
    if is_inferred(origin):
        return (
            "gradcheck guessed these inputs: pass the input shape with --input (e.g. --input 16x3x32x32, "
            "int:8x128:50257), or define sample_batch() in the model file"
        )
    if raw_input and module:
        name = module.partition(":")[0]
        return f"{name} takes the inputs from {origin} as they are, and they do not fit it: give inputs of the shape it expects"
    if user is None and module is None:
        return f"the model's forward rejected the inputs from {origin}: check that they match its signature"
    place = f" at {user.where}" if user else ""
    layer = f"; {module.partition(':')[0]} is where the shapes disagree" if module else ""
    return f"the inputs came from {origin}, so this looks like a bug in the model{place}{layer}"
