"""LoadedModel, and building one from an object of the user's file: call the class or factory
(with an autowired config where it takes one), and say how to call it when that fails."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from torch import nn

from gradcheck_cli.config.specs import TargetRef
from gradcheck_cli.load.autowire import ConfigRaised, config_fields, config_wiring, default_config, json_safe
from gradcheck_cli.load.downloads import is_network_error, offline_hint
from gradcheck_cli.load.importing import package_root
from gradcheck_cli.load.source import raise_site, source_of
from gradcheck_cli.records.errors import TargetError
from gradcheck_cli.records.stats import SourceRef

_EMPTY = inspect.Parameter.empty


FoundBy = Literal["explicit", "build_model", "model-instance", "single-subclass", "builtin", "call"]


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
    optimizer_hook: Callable[..., Any] | None = None
    """configure_optimizers/build_optimizer/optimizer from the model file, for --steps."""
    scheduler_hook: Callable[..., Any] | None = None
    """build_scheduler/configure_scheduler from the model file: called with the optimizer, for --steps."""
    train_step: Callable[..., Any] | None = None
    """train_step(model, batch, optimizer) from the model file: --steps runs it as the user's loop."""


def from_object(
    obj: Any, name: str, found_by: FoundBy, init_args: dict[str, Any], ref: TargetRef
) -> LoadedModel:
    if isinstance(obj, nn.Module):
        return LoadedModel(module=obj, found_by=found_by, source=source_of(type(obj)))
    if not callable(obj):
        raise TargetError(f"{name} is a {type(obj).__name__}, not a model, class or factory")
    built, recorded = construct(obj, name, init_args, ref)
    return LoadedModel(module=built, found_by=found_by, source=source_of(obj), init_args=recorded)


def construct(
    factory: Callable[..., Any], name: str, init_args: dict[str, Any], ref: TargetRef
) -> tuple[nn.Module, dict[str, Any]]:
    """Build the model; a constructor taking one config object gets it built and --init sets its fields.

    --init keys the config does not declare but the constructor accepts go to the constructor.
    """
    try:
        wiring = config_wiring(factory, init_args)
    except ConfigRaised as exc:
        raise build_failed(f"building the config {exc.call}", exc.factory, exc.error, ref) from exc.error
    if wiring is not None:
        config, keywords = wiring
        built = call_constructor(factory, name, [config], keywords, ref)
        on_config = sorted(k for k in init_args if k not in keywords)
        recorded = {"config": config_fields(config), **({"config_set": on_config} if on_config else {})}
        return built, {**recorded, **{k: json_safe(v) for k, v in keywords.items()}}
    built = call_constructor(factory, name, [], init_args, ref)
    return built, {k: json_safe(v) for k, v in init_args.items()}


def call_constructor(
    factory: Callable[..., Any], name: str, args: list[Any], kwargs: dict[str, Any], ref: TargetRef
) -> nn.Module:
    try:
        inspect.signature(factory).bind(*args, **kwargs)
    except TypeError as exc:
        raise TargetError(
            f"{name}{signature_text(factory)} cannot be called this way: {exc}",
            f"pass its arguments as a call, {call_form(ref.location, name, factory)}, "
            "or keyword arguments with --init KEY=VALUE",
        ) from None
    except ValueError:
        pass  # no signature (a builtin): just call it
    try:
        built = factory(*args, **kwargs)
    except (Exception, SystemExit) as exc:
        raise build_failed(f"building {name}{signature_text(factory)}", factory, exc, ref) from exc
    if not isinstance(built, nn.Module):
        raise TargetError(f"{name}() returned {type(built).__name__}, not an nn.Module")
    return built


def build_failed(what: str, factory: Any, exc: BaseException, ref: TargetRef) -> TargetError:
    """One exit-2 error for a constructor or config validator that raised: what, where, and a hint."""
    where = raise_site(exc, package_root(Path(ref.location).resolve().parent))
    hint = "check the constructor arguments (--init KEY=VALUE or the call form); --debug shows the traceback"
    if is_network_error(exc):
        hint = offline_hint(factory)
    return TargetError(f"{what} failed: {type(exc).__name__}: {exc}" + (f" ({where})" if where else ""), hint)


def signature_text(obj: Any) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"


def call_form(location: str, name: str, obj: Any) -> str:
    """`file.py:NAME`, or the quoted call form with the required arguments as CAPITALS
    placeholders for the user's values (`'model.py:Net(IN_DIM)'`): a lower-case name would read
    as a runnable command and fail with NameError."""
    required = required_names(obj) or ()
    if not required or autowires(obj):
        return f"{location}:{name}"
    return f"'{location}:{name}({', '.join(r.upper() for r in required)})'"


def required_names(obj: Any) -> tuple[str, ...] | None:
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return None
    return tuple(
        p.name for p in params if p.default is _EMPTY and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    )


def autowires(obj: Any) -> bool:
    with contextlib.suppress(Exception):
        return default_config(obj, {}) is not None
    return False
