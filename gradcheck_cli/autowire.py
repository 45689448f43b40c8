"""Config autowiring: a constructor whose one required parameter is a config object gets that
object built from defaults (minGPT's get_default_config(), a defaulted dataclass such as
nanoGPT's GPTConfig), with --init KEY=VALUE setting its fields. Torch-free."""

from __future__ import annotations

import dataclasses
import inspect
import sys
from collections.abc import Callable, Mapping
from typing import Any

from gradcheck_cli.errors import TargetError

_EMPTY = inspect.Parameter.empty


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
        from gradcheck_cli.hints import did_you_mean

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
