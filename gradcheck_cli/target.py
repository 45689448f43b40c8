"""load(TargetRef) -> LoadedModel: dispatch on the kind of TARGET (file, module, builtin) and
the call form 'model.py:Net(3, depth=4)'. Finding a model by convention is `discovery`;
building one (and autowiring its config) is `build` and `autowire`."""

from __future__ import annotations

import ast
import importlib
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from gradcheck_cli.autowire import json_safe
from gradcheck_cli.build import FoundBy, LoadedModel, call_constructor, from_object, source_of
from gradcheck_cli.discovery import BATCH_HOOKS, by_convention, find_candidates, optional_hook
from gradcheck_cli.errors import TargetError
from gradcheck_cli.importing import (
    import_file,
    import_module,
    package_root,
    redirect_stdout_to_stderr,
)
from gradcheck_cli.specs import TargetRef
from gradcheck_cli.zoo import get_arch

__all__ = ["FoundBy", "LoadedModel", "load", "package_root", "redirect_stdout_to_stderr"]


def load(ref: TargetRef, init_args: Mapping[str, Any], arch_opts: Mapping[str, Any]) -> LoadedModel:
    if ref.kind == "builtin":
        return _load_builtin(ref.location, arch_opts)
    module = import_file(Path(ref.location)) if ref.kind == "file" else import_module(ref.location)
    with redirect_stdout_to_stderr():
        loaded = _find_model(module, ref, dict(init_args))
    loaded.sample_batch = optional_hook(module, BATCH_HOOKS)
    loaded.loss_fn = optional_hook(module, ("loss_fn",))
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
        source=source_of(type(model)),
        default_inputs=spec.inputs(options),
        init_args=dict(arch_opts),
    )


def _find_model(module: ModuleType, ref: TargetRef, init_args: dict[str, Any]) -> LoadedModel:
    if ref.call:
        return _from_call(module, ref, init_args)
    if ref.name:
        obj = _attr(module, ref.name, ref)
        return from_object(obj, ref.name, "explicit", init_args, ref)
    return by_convention(module, ref, init_args)


def _attr(module: ModuleType, dotted: str, ref: TargetRef) -> Any:
    obj: Any = module
    for part in dotted.split("."):
        if not hasattr(obj, part):
            names = [c.name for c in find_candidates(module)]
            from gradcheck_cli.hints import did_you_mean

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
    built = call_constructor(func, name, args, {**kwargs, **init_args}, ref)
    recorded = {"call": ref.call.strip(), **{k: json_safe(v) for k, v in init_args.items()}}
    return LoadedModel(module=built, found_by="call", source=source_of(type(built)), init_args=recorded)


def _eval_node(node: ast.expr, namespace: dict[str, Any]) -> Any:
    return eval(compile(ast.Expression(node), "<TARGET>", "eval"), namespace)  # the user's own expression
