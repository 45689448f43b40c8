"""Import the user's model file or module, turning whatever goes wrong into one readable TargetError.

Torch-free: it runs the user's file, which imports torch itself.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import itertools
import linecache
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from gradcheck_cli.load.source import user_frame, user_location
from gradcheck_cli.records.errors import TargetError
from gradcheck_cli.records.files import check_regular

_counter = itertools.count()


@contextlib.contextmanager
def redirect_stdout_to_stderr() -> Iterator[None]:
    """Whatever the user's code prints goes to stderr, never into a report on stdout."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


@contextlib.contextmanager
def _script_argv(path: Path) -> Iterator[None]:
    """Training scripts parse argv at import: they must see the file alone, not gradcheck's flags."""
    saved = sys.argv
    sys.argv = [str(path)]
    try:
        yield
    finally:
        sys.argv = saved


def import_file(path: Path) -> ModuleType:
    """Import a model file standalone, under a unique name; as a package member on relative imports.

    Standalone first, because two projects may both call their file model.py and a package
    `__init__` may import heavy unrelated things. The file's folder and its nearest ancestor that is
    not a package go on sys.path, so both `from utils import x` and `from mypkg.utils import x` work.
    """
    path = _checked_file(path)
    root = package_root(path.parent)
    for folder in dict.fromkeys((str(root), str(path.parent))):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    with _script_argv(path), redirect_stdout_to_stderr(), _import_errors(path, root):
        try:
            return _exec_standalone(path)
        except ImportError as exc:
            if "relative import" not in str(exc) or root == path.parent:
                raise
        return importlib.import_module(_dotted_name(path, root))


def _checked_file(path: Path) -> Path:
    if not path.exists():
        raise TargetError(
            f"model file {path} not found", f"check the path, relative to the working directory {Path.cwd()}"
        )
    if path.is_dir():
        raise TargetError(f"{path} is a folder", "name the model file inside it, e.g. model.py")
    check_regular(path, "model file", TargetError)
    return path.resolve()


def package_root(folder: Path) -> Path:
    """The nearest ancestor of `folder` (itself included) that is not a package (has no __init__.py)."""
    while (folder / "__init__.py").exists() and folder.parent != folder:
        folder = folder.parent
    return folder


def _dotted_name(path: Path, root: Path) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts)


def _exec_standalone(path: Path) -> ModuleType:
    name = f"gradcheck_target_{next(_counter)}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TargetError(f"cannot import {path}", "the file must be a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def import_module(dotted: str) -> ModuleType:
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    with redirect_stdout_to_stderr(), _import_errors(Path(dotted), Path.cwd()):
        try:
            return importlib.import_module(dotted)
        except ModuleNotFoundError as exc:
            if exc.name and dotted.startswith(exc.name):
                raise TargetError(
                    f"module {dotted!r} not found",
                    "install it, or run from the folder that contains it (it must be importable)",
                ) from None
            raise


@contextlib.contextmanager
def _import_errors(path: Path, root: Path) -> Iterator[None]:
    """Turn what goes wrong while importing the user's file into one readable error."""
    try:
        yield
    except TargetError:
        raise
    except SyntaxError as exc:
        line = (exc.text or "").strip()
        raise TargetError(
            f"syntax error in {Path(exc.filename or path).name}:{exc.lineno}: {exc.msg}"
            + (f"\n    {line}" if line else ""),
            "fix the line above; the file must import cleanly with `python -c 'import ...'`",
        ) from None
    except ModuleNotFoundError as exc:
        frame = user_frame(exc, root)
        raise TargetError(
            f"{path.name} imports {exc.name!r}, which is not installed" + (f" ({frame})" if frame else ""),
            f"pip install the package that provides {exc.name!r} into this environment",
        ) from None
    except SystemExit as exc:
        raise TargetError(_script_message(path, exc, root), _SCRIPT_HINT) from None
    except Exception as exc:  # the user's module raised while importing
        frame = user_frame(exc, root)
        raise TargetError(
            f"importing {path.name} failed: {type(exc).__name__}: {exc}" + (f" ({frame})" if frame else ""),
            "run with --debug to see the traceback",
        ) from exc


_SCRIPT_HINT = (
    'put the script part under `if __name__ == "__main__":`, give its arguments defaults, '
    "or point gradcheck at a file that only defines the model (gradcheck imports it with sys.argv = [file])"
)


def _script_message(path: Path, exc: SystemExit, root: Path) -> str:
    where = user_location(exc, root)
    if where is None:
        return f"{path.name}: this file runs a script at import time (it exited with code {exc.code})"
    file, line = where
    text = linecache.getline(file, line)
    call = "parse_args" if "parse_args" in text else "exit"
    return (
        f"{path.name}: this file runs a script at import time ({call} at line {line} of {Path(file).name}, "
        f"exit code {exc.code})"
    )
