"""load(TargetRef) -> LoadedModel: dispatch on the kind of TARGET (file, module, builtin) and
the call form 'model.py:Net(3, depth=4)', read as data by `safe_eval` under the `trust` rule.
Finding a model by convention is `discovery`; building one (and autowiring its config) is `build`
and `autowire`."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from gradcheck_cli.config.specs import TargetRef
from gradcheck_cli.load import safe_eval, trust
from gradcheck_cli.load.autowire import json_safe
from gradcheck_cli.load.build import FoundBy, LoadedModel, call_constructor, from_object, source_of
from gradcheck_cli.load.discovery import BATCH_HOOKS, by_convention, find_candidates, optional_hook
from gradcheck_cli.load.importing import (
    import_file,
    import_module,
    package_root,
    redirect_stdout_to_stderr,
)
from gradcheck_cli.load.zoo import get_arch
from gradcheck_cli.records.errors import TargetError

__all__ = ["FoundBy", "LoadedModel", "load", "package_root", "redirect_stdout_to_stderr"]


def load(ref: TargetRef, init_args: Mapping[str, Any], arch_opts: Mapping[str, Any]) -> LoadedModel:
    if ref.kind == "builtin":
        return _load_builtin(ref.location, arch_opts)
    if ref.kind == "module":
        trust.refuse_module_target(ref.location)  # before the import: `os:system`, `somepkg.tools:run`
    module = import_file(Path(ref.location)) if ref.kind == "file" else import_module(ref.location)
    root = package_root(Path(ref.location).resolve().parent) if ref.kind == "file" else None
    project = trust.project_of(module, root)
    with redirect_stdout_to_stderr():
        loaded = _find_model(module, ref, dict(init_args), project)
    loaded.sample_batch = optional_hook(module, BATCH_HOOKS)
    loaded.loss_fn = optional_hook(module, ("loss_fn",))
    loaded.optimizer_hook = optional_hook(module, ("configure_optimizers", "build_optimizer", "optimizer"))
    loaded.scheduler_hook = optional_hook(module, ("build_scheduler", "configure_scheduler"))
    loaded.train_step = optional_hook(module, ("train_step",))
    return loaded


def _load_builtin(name: str, arch_opts: Mapping[str, Any]) -> LoadedModel:
    spec = get_arch(name)
    options = spec.resolve_options(arch_opts)
    module_name, _, func_name = spec.factory.partition(":")
    factory = getattr(importlib.import_module(f"gradcheck_cli.load.zoo.{module_name}"), func_name)
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


def _find_model(
    module: ModuleType, ref: TargetRef, init_args: dict[str, Any], project: trust.Project
) -> LoadedModel:
    if ref.call:
        return _from_call(module, ref, init_args, project)
    if ref.name:
        obj = _attr(module, ref.name, ref)
        _check_callable(obj, ref.name, project, init_args)
        return from_object(obj, ref.name, "explicit", init_args, ref)
    return by_convention(
        module, ref, init_args, lambda obj, name: _check_callable(obj, name, project, init_args)
    )


def _check_callable(obj: Any, name: str, project: trust.Project, kwargs: dict[str, Any]) -> None:
    """An instance is taken as it is; anything to be called must pass the trust rule first."""
    if isinstance(obj, nn.Module) or not callable(obj):
        return
    reason = trust.refuse_call(obj, project) or trust.refuse_arguments(obj, kwargs, project)
    if reason is not None:
        raise TargetError(f"refusing to call {name} ({reason})", trust.RULE_HINT)


def _attr(module: ModuleType, dotted: str, ref: TargetRef) -> Any:
    obj: Any = module
    for part in dotted.split("."):
        if part.startswith("__") or (part.startswith("_") and obj is not module):
            raise TargetError(
                f"{dotted!r} in TARGET {ref.raw!r}: names starting with '_' are not model attributes",
                "name the model class, factory or instance itself",
            )
        if not hasattr(obj, part):
            names = [c.name for c in find_candidates(module)]
            from gradcheck_cli.records.hints import did_you_mean

            hint = did_you_mean(part, names) or (f"found: {', '.join(names)}" if names else None)
            raise TargetError(f"{ref.location} has no {dotted!r}", hint)
        obj = getattr(obj, part)
    return obj


def _from_call(
    module: ModuleType, ref: TargetRef, init_args: dict[str, Any], project: trust.Project
) -> LoadedModel:
    """Evaluate 'Net(3, depth=4)' as data (safe_eval); --init adds keyword arguments to the call."""
    assert ref.call is not None
    policy = safe_eval.Policy(
        lookup=lambda name: _module_name(module, name),
        refuse_call=lambda obj: trust.refuse_call(obj, project),
        refuse_value=lambda obj: trust.refuse_value(obj, project),
        call_hint=trust.RULE_HINT,
        refuse_arguments=lambda obj, kwargs: trust.refuse_arguments(obj, kwargs, project),
    )
    try:
        parts = safe_eval.evaluate_call(ref.call, policy)
    except TargetError:
        raise
    except Exception as exc:
        raise TargetError(f"evaluating {ref.call!r} failed: {type(exc).__name__}: {exc}") from exc
    kwargs = {**parts.kwargs, **init_args}
    _check_callable(parts.func, parts.name, project, kwargs)
    built = call_constructor(parts.func, parts.name, parts.args, kwargs, ref)
    recorded = {"call": ref.call.strip(), **{k: json_safe(v) for k, v in init_args.items()}}
    return LoadedModel(module=built, found_by="call", source=source_of(type(built)), init_args=recorded)


def _module_name(module: ModuleType, name: str) -> Any:
    """A name of the model file (a module-level __getattr__ answers too); KeyError when absent."""
    namespace = vars(module)
    if name in namespace:
        return namespace[name]
    try:
        return getattr(module, name)
    except AttributeError:
        raise KeyError(name) from None
