"""Load the TARGET: a model file, a module attribute, a call expression or a builtin."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import itertools
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from torch import nn

from gradcheck_cli.errors import TargetError
from gradcheck_cli.specs import TargetRef
from gradcheck_cli.stats import SourceRef
from gradcheck_cli.zoo import get_arch

FoundBy = Literal["explicit", "build_model", "model-instance", "single-subclass", "builtin", "call"]
FACTORY_NAMES = ("build_model", "get_model", "create_model", "make_model")
BATCH_HOOKS = ("sample_batch", "get_batch")


@dataclass(slots=True, kw_only=True)
class LoadedModel:
    """A built model and what its file offers. Lives only in the torch tier."""

    module: nn.Module
    found_by: FoundBy
    source: SourceRef | None
    sample_batch: Callable[[], Any] | None = None
    loss_fn: Callable[..., Any] | None = None
    default_inputs: tuple[str, ...] = ()
    """--input specs a builtin is fed unless the user gives others."""
    init_args: dict[str, Any] = field(default_factory=dict)


_counter = itertools.count()


def load(ref: TargetRef, init_args: Mapping[str, Any], arch_opts: Mapping[str, Any]) -> LoadedModel:
    if ref.kind == "builtin":
        return _load_builtin(ref.location, arch_opts)
    module = import_file(Path(ref.location)) if ref.kind == "file" else _import_module(ref.location)
    with redirect_stdout_to_stderr():
        loaded = _find_model(module, ref, dict(init_args))
    loaded.sample_batch = _optional_hook(module, BATCH_HOOKS)
    loaded.loss_fn = _optional_hook(module, ("loss_fn",))
    return loaded


def _load_builtin(name: str, arch_opts: Mapping[str, Any]) -> LoadedModel:
    spec = get_arch(name)
    options = spec.resolve_options(arch_opts)
    module_name, _, func_name = spec.factory.partition(":")
    factory = getattr(importlib.import_module(f"gradcheck_cli.zoo.{module_name}"), func_name)
    try:
        model = factory(**options)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TargetError(f"builtin:{name} could not be built with {options}: {exc}") from None
    return LoadedModel(
        module=model,
        found_by="builtin",
        source=_source_of(type(model)),
        default_inputs=spec.inputs(options),
        init_args=dict(arch_opts),
    )


@contextlib.contextmanager
def redirect_stdout_to_stderr() -> Iterator[None]:
    """Whatever the user's code prints goes to stderr, never into a report on stdout."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


@contextlib.contextmanager
def _script_argv(path: Path) -> Iterator[None]:
    saved = sys.argv
    sys.argv = [str(path)]
    try:
        yield
    finally:
        sys.argv = saved


def import_file(path: Path) -> ModuleType:
    """Import a model file standalone, under a unique name, with its folder on sys.path."""
    if not path.exists():
        raise TargetError(f"model file {path} not found", "check the path, relative to the working directory")
    if path.is_dir():
        raise TargetError(f"{path} is a folder", "name the model file inside it, e.g. model.py")
    path = path.resolve()
    name = f"gradcheck_target_{next(_counter)}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TargetError(f"cannot import {path}", "the file must be a Python source file")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    sys.modules[name] = module
    with _script_argv(path), redirect_stdout_to_stderr(), _import_errors(path):
        spec.loader.exec_module(module)
    return module


def _import_module(dotted: str) -> ModuleType:
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    with redirect_stdout_to_stderr(), _import_errors(Path(dotted)):
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
def _import_errors(path: Path) -> Iterator[None]:
    """Turn what goes wrong while importing the user's file into one readable error."""
    try:
        yield
    except TargetError:
        raise
    except SyntaxError as exc:
        line = (exc.text or "").strip()
        raise TargetError(
            f"syntax error in {exc.filename or path}:{exc.lineno}: {exc.msg}"
            + (f"\n    {line}" if line else "")
        ) from None
    except ModuleNotFoundError as exc:
        where = _user_frame(exc, path)
        raise TargetError(
            f"{path.name} imports {exc.name!r}, which is not installed" + (f" ({where})" if where else ""),
            f"pip install the package that provides {exc.name!r} into this environment",
        ) from None
    except SystemExit as exc:
        where = _user_frame(exc, path)
        raise TargetError(
            f"{path.name} runs a script at import time and exited (code {exc.code})"
            + (f" at {where}" if where else ""),
            'move the script part under `if __name__ == "__main__":`, or point gradcheck at a factory',
        ) from None
    except Exception as exc:  # the user's module raised while importing
        where = _user_frame(exc, path)
        raise TargetError(
            f"importing {path.name} failed: {type(exc).__name__}: {exc}" + (f" ({where})" if where else ""),
            "run with --debug to see the traceback",
        ) from exc


def _user_frame(exc: BaseException, path: Path) -> str | None:
    """file:line of the innermost traceback frame in the user's file (or anywhere outside us)."""
    tb = exc.__traceback__
    found = None
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if Path(filename).name == path.name or (found is None and "gradcheck_cli" not in filename):
            found = f"{Path(filename).name}:{tb.tb_lineno}"
        tb = tb.tb_next
    return found


def _find_model(module: ModuleType, ref: TargetRef, init_args: dict[str, Any]) -> LoadedModel:
    if ref.call:
        return _from_call(module, ref, init_args)
    if ref.name:
        obj = _attr(module, ref.name, ref)
        return _from_object(obj, ref.name, "explicit", init_args)
    return _by_convention(module, ref, init_args)


def _attr(module: ModuleType, dotted: str, ref: TargetRef) -> Any:
    obj: Any = module
    for part in dotted.split("."):
        if not hasattr(obj, part):
            names = [n for n, v in vars(module).items() if _is_candidate(v, module) or n in FACTORY_NAMES]
            from gradcheck_cli.config import did_you_mean

            hint = did_you_mean(part, names) or (f"found: {', '.join(names)}" if names else None)
            raise TargetError(f"{ref.location} has no {dotted!r}", hint)
        obj = getattr(obj, part)
    return obj


def _from_call(module: ModuleType, ref: TargetRef, init_args: dict[str, Any]) -> LoadedModel:
    assert ref.call is not None
    try:
        obj = eval(ref.call, dict(vars(module)))  # the user's own expression, against their file
    except Exception as exc:
        raise TargetError(f"evaluating {ref.call!r} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, nn.Module):
        raise TargetError(f"{ref.call!r} returned {type(obj).__name__}, not an nn.Module")
    return LoadedModel(module=obj, found_by="call", source=_source_of(type(obj)), init_args=init_args)


def _from_object(obj: Any, name: str, found_by: FoundBy, init_args: dict[str, Any]) -> LoadedModel:
    if isinstance(obj, nn.Module):
        return LoadedModel(module=obj, found_by=found_by, source=_source_of(type(obj)))
    if not callable(obj):
        raise TargetError(f"{name} is a {type(obj).__name__}, not a model, class or factory")
    built = _construct(obj, name, init_args)
    return LoadedModel(module=built, found_by=found_by, source=_source_of(obj), init_args=init_args)


def _construct(factory: Callable[..., Any], name: str, init_args: dict[str, Any]) -> nn.Module:
    try:
        built = factory(**init_args)
    except TypeError as exc:
        signature = _signature(factory)
        raise TargetError(
            f"{name}{signature} could not be called: {exc}",
            f"pass its arguments with --init KEY=VALUE, or as a call: 'file.py:{name}(...)'",
        ) from None
    if not isinstance(built, nn.Module):
        raise TargetError(f"{name}() returned {type(built).__name__}, not an nn.Module")
    return built


def _signature(obj: Any) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"


def _is_candidate(value: Any, module: ModuleType) -> bool:
    return inspect.isclass(value) and issubclass(value, nn.Module) and value.__module__ == module.__name__


def _by_convention(module: ModuleType, ref: TargetRef, init_args: dict[str, Any]) -> LoadedModel:
    for name in FACTORY_NAMES:
        factory = getattr(module, name, None)
        if callable(factory):
            return _from_object(factory, name, "build_model", init_args)
    instance = getattr(module, "model", None)
    if isinstance(instance, nn.Module):
        return LoadedModel(module=instance, found_by="model-instance", source=_source_of(type(instance)))
    classes = [v for v in vars(module).values() if _is_candidate(v, module)]
    if len(classes) == 1:
        return _from_object(classes[0], classes[0].__name__, "single-subclass", init_args)
    listing = ", ".join(f"{c.__name__}{_signature(c)}" for c in classes) or "no nn.Module subclass"
    problem = "several nn.Module classes" if classes else "no model"
    example = f"{ref.location}:{classes[-1].__name__}" if classes else f"{ref.location}:NAME"
    raise TargetError(
        f"{ref.location}: found {problem} ({listing}) and no build_model() or module-level `model`",
        f"name one: `gradcheck analyze {example}`, or define build_model() in the file",
    )


def _optional_hook(module: ModuleType, names: tuple[str, ...]) -> Callable[..., Any] | None:
    for name in names:
        hook = getattr(module, name, None)
        if callable(hook) and not inspect.isclass(hook):
            return hook
    return None


def _source_of(obj: Any) -> SourceRef | None:
    try:
        file = inspect.getsourcefile(obj)
        _, line = inspect.getsourcelines(obj)
    except (TypeError, OSError):
        return None
    return SourceRef(file=_display_path(file), line=line) if file else None


def _display_path(file: str) -> str:
    path = Path(file)
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    return str(path)
