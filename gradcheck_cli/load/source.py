"""Where in the user's code: every such question goes through here.

- `locate_modules(model)`: each module's `self.<attr> = ...` line in the nearest user class;
- `source_of(obj)`: where a class or function is defined;
- `user_caller(frame, ...)`: the first frame of user code on a stack (one frame filter:
  `frame_owner` tells torch, torch.nn modules, gradcheck and user code apart);
- `user_frame(exc, root)`: the innermost traceback frame in the user's project;
- `ref_at`, `relative`, `relative_path`: paths shown relative to the working directory.

Torch-free at import: torch's location is found without importing it.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib.util
import inspect
import linecache
import sys
import textwrap
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal, cast

from gradcheck_cli.records.stats import SourceRef

if TYPE_CHECKING:
    from torch.nn import Module

PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])  # the gradcheck_cli folder
Owner = Literal["torch.nn", "torch", "gradcheck", "user"]


# -- paths --------------------------------------------------------------------------------------


def relative_path(file: str, cwd: Path | None = None) -> str | None:
    """`file` relative to `cwd` (default: the working directory), None when it is not below it."""
    base = (cwd or Path.cwd()).resolve()
    with contextlib.suppress(ValueError, OSError):
        return Path(file).resolve().relative_to(base).as_posix()
    return None


def ref_at(file: str, line: int | None = None) -> SourceRef:
    """A reference to `file` as reports print it: gradcheck's own files relative to the folder that
    holds the installed package (`gradcheck_cli/load/zoo/mlp.py`), others relative to the working
    directory when they lie below it (else whole: they are the user's own paths)."""
    shown = relative_path(file, Path(PACKAGE_ROOT).parent) if frame_owner(file) == "gradcheck" else None
    return SourceRef(file=shown or relative_path(file) or str(Path(file).resolve()), line=line)


def relative(ref: SourceRef) -> SourceRef:
    """`ref` with its file relative to the working directory when it lies below it, else as given."""
    shown = relative_path(ref.file)
    return SourceRef(file=shown, line=ref.line) if shown is not None else ref


def source_of(obj: Any) -> SourceRef | None:
    """Where a class or function is defined."""
    try:
        file = inspect.getsourcefile(obj)
        _, line = inspect.getsourcelines(obj)
    except (TypeError, OSError):
        return None
    if not file or frame_owner(str(Path(file).resolve())) in ("torch", "torch.nn"):
        return None  # a bare nn.Sequential is defined in torch, not where the user wrote it
    return ref_at(file, line)


# -- frames -------------------------------------------------------------------------------------


@functools.cache
def torch_root() -> str:
    spec = importlib.util.find_spec("torch")
    origin = spec.origin if spec is not None else None
    return str(Path(origin).resolve().parent) if origin else "<no torch>"


@functools.cache
def _nn_modules_root() -> str:
    return str(Path(torch_root()) / "nn" / "modules")


def frame_owner(file: str) -> Owner:
    """Whose code a frame's file is: torch.nn's modules, the rest of torch, gradcheck, or the user's."""
    if file.startswith(_nn_modules_root()):
        return "torch.nn"
    if file.startswith(torch_root()):
        return "torch"
    if file.startswith(PACKAGE_ROOT):
        return "gradcheck"
    return "user"


def user_caller(frame: FrameType | None, *, within: tuple[Owner, ...]) -> FrameType | None:
    """The first user frame walking out from `frame` through frames owned by `within`;
    None when a frame of any other owner comes first (torch.nn module code, gradcheck's own)."""
    while frame is not None:
        owner = frame_owner(frame.f_code.co_filename)
        if owner == "user":
            return frame
        if owner not in within:
            return None
        frame = frame.f_back
    return None


def is_user_frame(frame: FrameType) -> bool:
    """A frame of the user's own code: not torch, not gradcheck, not an installed package, not the
    standard library (a forward's `raise` is named by the innermost such frame)."""
    filename = frame.f_code.co_filename
    if frame_owner(filename) != "user" or filename.startswith("<"):
        return False
    top = str(frame.f_globals.get("__name__", "")).partition(".")[0]
    if top in sys.stdlib_module_names or top in ("typer", "click", "rich", "_pytest", "pluggy"):
        return False
    return not any(part in ("site-packages", "dist-packages") for part in Path(filename).parts)


def user_frame(exc: BaseException, root: Path) -> str | None:
    """'file.py:12: the source line' of the innermost frame in the user's project."""
    where = user_location(exc, root)
    if where is None:
        return None
    file, line = where
    text = linecache.getline(file, line).strip()
    return f"{Path(file).name}:{line}" + (f": {text}" if text else "")


def user_location(exc: BaseException, root: Path) -> tuple[str, int] | None:
    """(file, line) of the innermost traceback frame in the user's project (under `root`)."""
    tb = exc.__traceback__
    found = None
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if _in_project(filename, root):
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def raise_site(exc: BaseException, root: Path) -> str | None:
    """Where `exc` was raised: the innermost frame in the user's project, else the innermost frame
    (a config validator or constructor inside an installed library still gets its file:line)."""
    found = user_frame(exc, root)
    if found is not None:
        return found
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return None
    file, line = tb.tb_frame.f_code.co_filename, tb.tb_lineno
    text = linecache.getline(file, line).strip()
    return f"{file}:{line}" + (f": {text}" if text else "")


def _in_project(filename: str, root: Path) -> bool:
    if "site-packages" in filename or filename.startswith("<"):
        return False
    return relative_path(filename, root) is not None


# -- modules ------------------------------------------------------------------------------------


def locate_modules(model: Module) -> dict[str, SourceRef]:
    """name -> file:line of the `self.<attr> = ...` that created it, in the nearest user class."""
    modules = dict(model.named_modules())
    out: dict[str, SourceRef] = {}
    for name in modules:
        if name:
            ref = _locate(name, modules)
            if ref:
                out[name] = ref
    return out


def _locate(name: str, modules: dict[str, Module]) -> SourceRef | None:
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
    from torch import nn

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
    if not file or str(Path(file).resolve()).startswith(torch_root()):
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
                found.setdefault(target.attr, ref_at(file, start + node.lineno - 1))
    return found
