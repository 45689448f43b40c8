"""Config autowiring: a constructor whose one required parameter is a config object gets that
object built from defaults (minGPT's get_default_config(), a defaulted dataclass such as
nanoGPT's GPTConfig), with --init KEY=VALUE setting its fields. Torch-free."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import sys
from collections.abc import Callable, Mapping
from typing import Any

from gradcheck_cli.records.errors import TargetError

_EMPTY = inspect.Parameter.empty


class ConfigRaised(Exception):
    """A config class (or get_default_config) raised while being built; `call` says with what."""

    def __init__(self, call: str, factory: Any, error: BaseException) -> None:
        super().__init__(call)
        self.call, self.factory, self.error = call, factory, error


def default_config(factory: Callable[..., Any], init_args: dict[str, Any]) -> Any | None:
    """The config object for a constructor whose one required parameter is a config, with --init applied.

    Recognised: a class with get_default_config() (minGPT), the parameter's annotation being a
    dataclass whose fields all have defaults, or the one such dataclass in the same file (nanoGPT's
    GPTConfig). None when the constructor does not look like that.
    """
    wiring = config_wiring(factory, init_args)
    return wiring[0] if wiring is not None else None


def config_wiring(
    factory: Callable[..., Any], init_args: dict[str, Any]
) -> tuple[Any, dict[str, Any]] | None:
    """(config, constructor keywords) for a one-config constructor; None when it does not take one.

    A dataclass config is built from its class with the --init fields, never `replace` on a
    default instance: a `__post_init__` that derives one field from another (a per-layer list
    sized by the layer count) would keep the stale derived value. --init keys the config does not
    declare but the constructor accepts stay constructor keywords.
    """
    param = _single_required_param(factory)
    if param is None or param.name in init_args:
        return None
    hook = _config_hook(factory)
    config_class = None if hook is not None else _config_class(factory, param)
    if hook is None and config_class is None:
        return None
    declared = _config_field_names(hook, config_class)
    if config_class is not None and _takes_free_keywords(config_class):
        # a config keeping arbitrary keywords as attributes (a PretrainedConfig-like class): every
        # --init key the constructor does not take itself goes to the config
        accepted, _ = _keyword_names(factory, param)
        declared |= {k for k in init_args if k not in accepted}
    fields = {k: v for k, v in init_args.items() if k in declared}
    keywords = _constructor_keywords(factory, param, init_args, declared, config_class or hook)
    if config_class is not None:
        return _build_config(config_class, fields), keywords
    assert hook is not None
    return apply_fields(_build_config(hook, {}), fields), keywords


def _config_field_names(hook: Callable[[], Any] | None, config_class: type | None) -> set[str]:
    if config_class is not None and dataclasses.is_dataclass(config_class):
        return {f.name for f in dataclasses.fields(config_class) if f.init}
    if config_class is not None:
        return set(_init_parameters(config_class))
    assert hook is not None
    with contextlib.suppress(Exception):
        return set(config_fields(hook()))
    return set()


def _init_parameters(config_class: type) -> dict[str, inspect.Parameter]:
    try:
        params = inspect.signature(config_class).parameters
    except (TypeError, ValueError):
        return {}
    return {n: p for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _takes_free_keywords(config_class: type) -> bool:
    with contextlib.suppress(TypeError, ValueError):
        return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(config_class).parameters.values())
    return False


def _constructor_keywords(
    factory: Callable[..., Any],
    param: inspect.Parameter,
    init_args: dict[str, Any],
    declared: set[str],
    config: Any,
) -> dict[str, Any]:
    """--init keys the config does not declare: the constructor's own keywords, else an error."""
    accepted, open_ended = _keyword_names(factory, param)
    keywords = {k: v for k, v in init_args.items() if k not in declared}
    unknown = [k for k in keywords if k not in accepted and not open_ended]
    if unknown:
        from gradcheck_cli.records.hints import did_you_mean

        choices = sorted(declared | accepted)
        raise TargetError(
            f"--init {unknown[0]}: {getattr(config, '__name__', 'the config')} has no field "
            f"{unknown[0]!r}, and the constructor takes no keyword {unknown[0]!r}",
            did_you_mean(unknown[0], choices)
            or f"config fields and constructor keywords: {', '.join(choices)}",
        )
    return keywords


def _keyword_names(factory: Callable[..., Any], config_param: inspect.Parameter) -> tuple[set[str], bool]:
    params = inspect.signature(factory).parameters.values()
    names = {
        p.name
        for p in params
        if p.name != config_param.name and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


def _build_config(config_class: Callable[..., Any], fields: dict[str, Any]) -> Any:
    """The config from its class (or get_default_config); its validator's error as ConfigRaised."""
    try:
        return config_class(**fields)
    except (Exception, SystemExit) as exc:
        name = getattr(config_class, "__qualname__", "the config")
        raise ConfigRaised(
            f"{name}({', '.join(f'{k}={v!r}' for k, v in fields.items())})", config_class, exc
        ) from exc


def _single_required_param(factory: Callable[..., Any]) -> inspect.Parameter | None:
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return None
    required = [p for p in params if p.default is _EMPTY and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if len(required) != 1 or required[0].kind == inspect.Parameter.KEYWORD_ONLY:
        return None
    return required[0]


def _config_hook(factory: Callable[..., Any]) -> Callable[[], Any] | None:
    hook = getattr(factory, "get_default_config", None)
    return hook if inspect.isclass(factory) and callable(hook) else None


def _config_class(factory: Callable[..., Any], param: inspect.Parameter) -> type | None:
    home = sys.modules.get(getattr(factory, "__module__", ""))
    namespace = vars(home) if home is not None else {}
    annotation = param.annotation
    if isinstance(annotation, str):
        annotation = namespace.get(annotation.strip("'\""))
    if _defaulted_dataclass(annotation):
        return annotation
    if annotation is not _EMPTY and annotation is not None:
        return None
    declared = getattr(factory, "config_class", None) if inspect.isclass(factory) else None
    if _defaulted_class(declared):
        return declared  # the class names its config (a sequence-classification base's config_class)
    found = [v for v in namespace.values() if _defaulted_dataclass(v) and v.__module__ == factory.__module__]
    return found[0] if len(found) == 1 else None


def _defaulted_dataclass(obj: Any) -> bool:
    if not (inspect.isclass(obj) and dataclasses.is_dataclass(obj)):
        return False
    return all(
        f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        for f in dataclasses.fields(obj)
        if f.init
    )


def _defaulted_class(obj: Any) -> bool:
    """A class that can be built with no arguments: a dataclass with defaults, or a plain config
    class whose __init__ parameters all have defaults."""
    if not inspect.isclass(obj):
        return False
    if dataclasses.is_dataclass(obj):
        return _defaulted_dataclass(obj)
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return False
    return all(p.default is not _EMPTY or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params)


def apply_fields(config: Any, values: Mapping[str, Any]) -> Any:
    known = set(config_fields(config))
    unknown = [k for k in values if k not in known]
    if unknown:
        from gradcheck_cli.records.hints import did_you_mean

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
