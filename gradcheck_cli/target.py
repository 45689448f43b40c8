"""Load the TARGET: a model file, a module attribute, a call expression or a builtin."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import importlib
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from torch import nn

from gradcheck_cli.errors import TargetError
from gradcheck_cli.importing import (
    import_file,
    import_module,
    package_root,
    redirect_stdout_to_stderr,
    user_frame,
)
from gradcheck_cli.specs import TargetRef
from gradcheck_cli.stats import SourceRef
from gradcheck_cli.zoo import get_arch

FoundBy = Literal["explicit", "build_model", "model-instance", "single-subclass", "builtin", "call"]
FACTORY_NAMES = ("build_model", "get_model", "create_model", "make_model")
BATCH_HOOKS = ("sample_batch", "get_batch")
HOOK_NAMES = (*BATCH_HOOKS, "loss_fn")
_EMPTY = inspect.Parameter.empty


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
    hooks_from: str = "the model file"
    """Where sample_batch/loss_fn came from, for the report header ("analyze()" from the API)."""


def load(ref: TargetRef, init_args: Mapping[str, Any], arch_opts: Mapping[str, Any]) -> LoadedModel:
    if ref.kind == "builtin":
        return _load_builtin(ref.location, arch_opts)
    module = import_file(Path(ref.location)) if ref.kind == "file" else import_module(ref.location)
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


# ---------------------------------------------------------------------------- finding the model


def _find_model(module: ModuleType, ref: TargetRef, init_args: dict[str, Any]) -> LoadedModel:
    if ref.call:
        return _from_call(module, ref, init_args)
    if ref.name:
        obj = _attr(module, ref.name, ref)
        return _from_object(obj, ref.name, "explicit", init_args, ref)
    return _by_convention(module, ref, init_args)


def _attr(module: ModuleType, dotted: str, ref: TargetRef) -> Any:
    obj: Any = module
    for part in dotted.split("."):
        if not hasattr(obj, part):
            names = [c.name for c in _candidates(module)]
            from gradcheck_cli.config import did_you_mean

            hint = did_you_mean(part, names) or (f"found: {', '.join(names)}" if names else None)
            raise TargetError(f"{ref.location} has no {dotted!r}", hint)
        obj = getattr(obj, part)
    return obj


def _from_call(module: ModuleType, ref: TargetRef, init_args: dict[str, Any]) -> LoadedModel:
    """Evaluate 'Net(3, depth=4)' against the file; --init adds keyword arguments to the call."""
    assert ref.call is not None
    try:
        tree = ast.parse(ref.call.strip(), mode="eval")
    except SyntaxError as exc:
        raise TargetError(
            f"cannot read the call {ref.call!r}: {exc.msg}", "e.g. 'model.py:Net(10, depth=4)'"
        ) from None
    if not isinstance(tree.body, ast.Call):
        raise TargetError(f"{ref.call!r} is not a call", "e.g. 'model.py:Net(10, depth=4)'")
    namespace = dict(vars(module))
    call = tree.body
    try:
        func = _eval_node(call.func, namespace)
        args = [_eval_node(a, namespace) for a in call.args]
        kwargs = {k.arg: _eval_node(k.value, namespace) for k in call.keywords if k.arg}
    except Exception as exc:
        raise TargetError(f"evaluating {ref.call!r} failed: {type(exc).__name__}: {exc}") from None
    name = ast.unparse(call.func)
    built = _call_constructor(func, name, args, {**kwargs, **init_args}, ref)
    recorded = {"call": ref.call.strip(), **{k: json_safe(v) for k, v in init_args.items()}}
    return LoadedModel(module=built, found_by="call", source=_source_of(type(built)), init_args=recorded)


def _eval_node(node: ast.expr, namespace: dict[str, Any]) -> Any:
    return eval(compile(ast.Expression(node), "<TARGET>", "eval"), namespace)  # the user's own expression


def _from_object(
    obj: Any, name: str, found_by: FoundBy, init_args: dict[str, Any], ref: TargetRef
) -> LoadedModel:
    if isinstance(obj, nn.Module):
        return LoadedModel(module=obj, found_by=found_by, source=_source_of(type(obj)))
    if not callable(obj):
        raise TargetError(f"{name} is a {type(obj).__name__}, not a model, class or factory")
    built, recorded = construct(obj, name, init_args, ref)
    return LoadedModel(module=built, found_by=found_by, source=_source_of(obj), init_args=recorded)


def construct(
    factory: Callable[..., Any], name: str, init_args: dict[str, Any], ref: TargetRef
) -> tuple[nn.Module, dict[str, Any]]:
    """Build the model; a constructor taking one config object gets it built and --init sets its fields."""
    config = default_config(factory, init_args)
    if config is not None:
        built = _call_constructor(factory, name, [config], {}, ref)
        return built, {"config": config_fields(config)}
    built = _call_constructor(factory, name, [], init_args, ref)
    return built, {k: json_safe(v) for k, v in init_args.items()}


def _call_constructor(
    factory: Callable[..., Any], name: str, args: list[Any], kwargs: dict[str, Any], ref: TargetRef
) -> nn.Module:
    try:
        inspect.signature(factory).bind(*args, **kwargs)
    except TypeError as exc:
        raise TargetError(
            f"{name}{_signature(factory)} cannot be called this way: {exc}",
            f"pass its arguments as a call, {_call_form(ref.location, name, factory)}, "
            "or keyword arguments with --init KEY=VALUE",
        ) from None
    except ValueError:
        pass  # no signature (a builtin): just call it
    try:
        built = factory(*args, **kwargs)
    except Exception as exc:
        frame = user_frame(exc, package_root(Path(ref.location).resolve().parent))
        raise TargetError(
            f"building {name}{_signature(factory)} failed: {type(exc).__name__}: {exc}"
            + (f" ({frame})" if frame else ""),
            "check the constructor arguments (--init KEY=VALUE or the call form); --debug shows the traceback",
        ) from exc
    if not isinstance(built, nn.Module):
        raise TargetError(f"{name}() returned {type(built).__name__}, not an nn.Module")
    return built


# ---------------------------------------------------------------------------- config autowiring


def default_config(factory: Callable[..., Any], init_args: dict[str, Any]) -> Any | None:
    """The config object for a constructor whose one required parameter is a config, with --init applied.

    Recognised: a class with get_default_config() (minGPT), the parameter's annotation being a
    dataclass whose fields all have defaults, or the one such dataclass in the same file (nanoGPT's
    GPTConfig). None when the constructor does not look like that.
    """
    param = _single_required_param(factory)
    if param is None or param.name in init_args:
        return None
    config = _config_from_hook(factory) or _config_from_dataclass(factory, param)
    if config is None:
        return None
    return apply_fields(config, init_args)


def _single_required_param(factory: Callable[..., Any]) -> inspect.Parameter | None:
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return None
    required = [p for p in params if p.default is _EMPTY and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if len(required) != 1 or required[0].kind == inspect.Parameter.KEYWORD_ONLY:
        return None
    return required[0]


def _config_from_hook(factory: Callable[..., Any]) -> Any | None:
    hook = getattr(factory, "get_default_config", None)
    return hook() if inspect.isclass(factory) and callable(hook) else None


def _config_from_dataclass(factory: Callable[..., Any], param: inspect.Parameter) -> Any | None:
    home = sys.modules.get(getattr(factory, "__module__", ""))
    namespace = vars(home) if home is not None else {}
    annotation = param.annotation
    if isinstance(annotation, str):
        annotation = namespace.get(annotation.strip("'\""))
    if _defaulted_dataclass(annotation):
        return annotation()
    if annotation is not _EMPTY and annotation is not None:
        return None
    found = [v for v in namespace.values() if _defaulted_dataclass(v) and v.__module__ == factory.__module__]
    return found[0]() if len(found) == 1 else None


def _defaulted_dataclass(obj: Any) -> bool:
    if not (inspect.isclass(obj) and dataclasses.is_dataclass(obj)):
        return False
    return all(
        f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        for f in dataclasses.fields(obj)
        if f.init
    )


def apply_fields(config: Any, values: Mapping[str, Any]) -> Any:
    known = set(config_fields(config))
    unknown = [k for k in values if k not in known]
    if unknown:
        from gradcheck_cli.config import did_you_mean

        raise TargetError(
            f"--init {unknown[0]}: {type(config).__name__} has no field {unknown[0]!r}",
            did_you_mean(unknown[0], sorted(known)) or f"its fields: {', '.join(sorted(known))}",
        )
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.replace(config, **values)
    for key, value in values.items():
        setattr(config, key, value)
    return config


def config_fields(config: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        items = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    else:
        items = {k: v for k, v in vars(config).items() if not k.startswith("_")}
    return {k: json_safe(v) for k, v in items.items()}


def json_safe(value: Any) -> Any:
    """Constructor arguments as the report can write them: plain values, else their repr."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    return repr(value)


# ---------------------------------------------------------------------------- the bare-file convention


@dataclass(frozen=True, slots=True)
class Candidate:
    name: str
    obj: Any
    required: tuple[str, ...]
    """Names of the arguments it needs; empty when it can be called with none."""


def _candidates(module: ModuleType) -> list[Candidate]:
    """nn.Module classes with parameters of their own and no-argument factory functions, in file order."""
    out = []
    for name, value in vars(module).items():
        if (
            name.startswith("_")
            or name in HOOK_NAMES
            or getattr(value, "__module__", None) != module.__name__
        ):
            continue
        is_class = inspect.isclass(value) and issubclass(value, nn.Module)
        if is_class and value.__init__ is nn.Module.__init__:
            continue  # a NewGELU: no constructor of its own, so no parameters, not a model
        required = _required_names(value) if (is_class or inspect.isfunction(value)) else None
        if required is not None and (is_class or not required):
            out.append(Candidate(name, value, required))
    return out


def _required_names(obj: Any) -> tuple[str, ...] | None:
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return None
    return tuple(
        p.name for p in params if p.default is _EMPTY and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    )


def _by_convention(module: ModuleType, ref: TargetRef, init_args: dict[str, Any]) -> LoadedModel:
    for name in FACTORY_NAMES:
        factory = getattr(module, name, None)
        if callable(factory):
            return _from_object(factory, name, "build_model", init_args, ref)
    instance = getattr(module, "model", None)
    if isinstance(instance, nn.Module):
        return LoadedModel(module=instance, found_by="model-instance", source=_source_of(type(instance)))
    candidates = _candidates(module)
    built = _buildable_models(
        [c for c in candidates if inspect.isclass(c.obj) and not c.required], init_args, ref
    )
    if not built:
        built = _buildable_models(_single_autowired(candidates), init_args, ref)
    if len(built) == 1:
        name, (model, recorded) = next(iter(built.items()))
        source = _source_of(getattr(module, name))
        return LoadedModel(module=model, found_by="single-subclass", source=source, init_args=recorded)
    raise _no_single_model(ref, candidates, several=len(built) > 1)


def _single_autowired(candidates: list[Candidate]) -> list[Candidate]:
    """GPT(config) with a defaulted GPTConfig in the file: the one top class whose config can be built."""
    classes = [c for c in candidates if inspect.isclass(c.obj) and c.required and _autowires(c.obj)]
    top = [c for c in classes if not _used_by_others(c, candidates)]
    return top if len(top) == 1 else []


def _buildable_models(
    classes: list[Candidate], init_args: dict[str, Any], ref: TargetRef
) -> dict[str, tuple[nn.Module, dict[str, Any]]]:
    """Build each no-argument class; keep those that own parameters."""
    out = {}
    for candidate in classes:
        model, recorded = construct(candidate.obj, candidate.name, init_args, ref)
        if any(True for _ in model.parameters()):
            out[candidate.name] = (model, recorded)
    return out


def _no_single_model(ref: TargetRef, candidates: list[Candidate], several: bool) -> TargetError:
    lines = [f"  {_call_form(ref.location, c.name, c.obj):<48} {_describe(c)}" for c in candidates]
    problem = "several models" if several else "no model it can build without arguments"
    listing = "\n".join(lines) if lines else "  (no nn.Module class with parameters, no factory function)"
    usable = _best_example(candidates)
    example = _call_form(ref.location, usable.name, usable.obj) if usable else f"{ref.location}:NAME"
    return TargetError(
        f"{ref.location}: found {problem}, and no build_model() or module-level `model`. Candidates:\n{listing}",
        f"name one: gradcheck analyze {example}; set constructor keyword arguments with --init KEY=VALUE",
    )


def _best_example(candidates: list[Candidate]) -> Candidate | None:
    """A candidate ready to build and used by no other (the top model), else the last one defined."""
    ready = [c for c in candidates if not c.required or _autowires(c.obj)]
    top = [c for c in ready if not _used_by_others(c, candidates)]
    pool = top or ready or candidates
    return pool[0] if top else (pool[-1] if pool else None)


def _used_by_others(candidate: Candidate, candidates: list[Candidate]) -> bool:
    """Block is built inside GPT's source: it is a part, not the model."""
    for other in candidates:
        if other is not candidate:
            with contextlib.suppress(OSError, TypeError):
                if f"{candidate.name}(" in inspect.getsource(other.obj):
                    return True
    return False


def _autowires(obj: Any) -> bool:
    with contextlib.suppress(Exception):
        return default_config(obj, {}) is not None
    return False


def _describe(candidate: Candidate) -> str:
    kind = "class" if inspect.isclass(candidate.obj) else "factory function"
    if not candidate.required:
        return f"({kind}, no arguments needed)"
    if _autowires(candidate.obj):
        return f"({kind}; its config is built from defaults, --init sets fields)"
    return f"({kind}; needs {', '.join(candidate.required)}: {candidate.name}{_signature(candidate.obj)})"


def _call_form(location: str, name: str, obj: Any) -> str:
    """`file.py:NAME`, or the quoted call form with the required arguments as placeholders."""
    required = _required_names(obj) or ()
    if not required or _autowires(obj):
        return f"{location}:{name}"
    return f"'{location}:{name}({', '.join(required)})'"


def _signature(obj: Any) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"


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
    return SourceRef.at(file, line) if file else None
