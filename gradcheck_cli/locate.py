"""Point each module at the line of the user's code that defines it."""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
from pathlib import Path
from typing import Any, cast

from torch import nn

from gradcheck_cli.stats import SourceRef

_TORCH_ROOT = str(Path(nn.__file__).resolve().parent.parent)


def locate_modules(model: nn.Module) -> dict[str, SourceRef]:
    """name -> file:line of the `self.<attr> = ...` that created it, in the nearest user class."""
    modules = dict(model.named_modules())
    out: dict[str, SourceRef] = {}
    for name in modules:
        if name:
            ref = _locate(name, modules)
            if ref:
                out[name] = ref
    return out


def _locate(name: str, modules: dict[str, nn.Module]) -> SourceRef | None:
    parts = name.split(".")
    # Walk up: the first ancestor defined in user code that assigns the next path component.
    for depth in range(len(parts) - 1, -1, -1):
        parent = modules.get(".".join(parts[:depth]))
        if parent is None:
            continue
        ref = _assignment(cast(Any, type(parent)), parts[depth])
        if ref:
            return ref
    return None


@functools.lru_cache(maxsize=512)
def _assignment(cls: Any, attr: str) -> SourceRef | None:
    for klass in cls.__mro__:
        if klass is nn.Module or not issubclass(klass, nn.Module):
            break
        lines = _assignments(klass)
        if lines is None:
            continue
        if attr in lines:
            return lines[attr]
    return None


@functools.lru_cache(maxsize=256)
def _assignments(klass: Any) -> dict[str, SourceRef] | None:
    try:
        file = inspect.getsourcefile(klass)
        source, start = inspect.getsourcelines(klass)
    except (TypeError, OSError):
        return None
    if not file or str(Path(file).resolve()).startswith(_TORCH_ROOT):
        return None
    try:
        tree = ast.parse(textwrap.dedent("".join(source)))
    except SyntaxError:
        return None
    found: dict[str, SourceRef] = {}
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Assign, ast.AnnAssign)):
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            if (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == "self"
            ):
                found.setdefault(target.attr, SourceRef.at(file, start + node.lineno - 1))
    return found
