"""Option values converted without pydantic where typer's own conversion would give the same value.

typer (0.2x) converts every option value through a pydantic TypeAdapter it builds on first use,
so any command with a non-flag option imports pydantic (about a quarter of `gradcheck analyze`'s
own start-up). gradcheck's options are str, int, float, Path and lists of str: `PlainCommand`
gives those parameters a converter that handles the values whose result is not in doubt (any
string; an integer or decimal number in plain notation) and hands every other value to typer's
own converter, which then imports pydantic and accepts or refuses it with its usual message.
Where typer's internals differ from what this expects (another typer version), nothing changes.

Torch-free.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.core import TyperCommand, TyperGroup

try:  # typer's conversion layer (0.2x); older typers convert through click and need nothing here
    from typer import _coercion, _param_types
except ImportError:  # pragma: no cover (another typer)
    _coercion = None  # type: ignore[assignment]

INTEGER = re.compile(r"[+-]?[0-9]+")
DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
UNSET = object()


def plain(annotation: Any, value: Any) -> Any:
    """`value` as typer would convert it to `annotation`, or UNSET when only typer can say."""
    if isinstance(value, (list, tuple)) and annotation == list[str]:
        items = [plain(str, item) for item in value]
        return UNSET if any(item is UNSET for item in items) else items
    if annotation is bool and isinstance(value, bool):
        return value
    if not isinstance(value, str):
        return UNSET
    if annotation is str:
        return value
    if annotation is int and INTEGER.fullmatch(value):
        return int(value)
    if annotation is float and DECIMAL.fullmatch(value):
        return float(value)
    if annotation is Path:
        return Path(value)  # then typer's own checks (PlainParam)
    return UNSET


if _coercion is not None:

    @dataclass(frozen=True)
    class PlainParam(_coercion.RuntimeParam):
        """Converts a plain value itself; anything else goes to typer's converter."""

        descriptor: Any

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            converted = plain(self.annotation, value)
            if converted is not UNSET and self.annotation is Path:  # then typer's checks (readable=)
                return _param_types.coerce_cli_path(
                    converted, self.parameter_info, path_type=Path, param=param, ctx=ctx
                )
            if converted is not UNSET:
                return converted
            typer_own = _coercion.build_runtime_param(self.descriptor)
            return typer_own._coerce_value(value, param=param, ctx=ctx)


def _preset(params: list[Any]) -> None:
    """Give each parameter of a plain type the PlainParam converter (once)."""
    if _coercion is None:
        return  # pragma: no cover
    for param in params:
        descriptor = getattr(param, "type_descriptor", None)
        if descriptor is None or getattr(param, "_runtime_param", UNSET) is not None:
            continue
        info = descriptor.parameter_info
        if descriptor.file_annotation is not None or info.parser is not None or info.path_type is not None:
            continue
        if descriptor.annotation in (str, int, float, bool, Path, list[str]) and not descriptor.is_ranged:
            param._runtime_param = PlainParam(
                parameter_info=info, annotation=descriptor.annotation, descriptor=descriptor
            )


class PlainCommand(TyperCommand):
    """A typer command whose plain option values are converted without pydantic."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        _preset(self.get_params(ctx))
        return super().parse_args(ctx, args)


class PlainGroup(TyperGroup):
    """The app's group (its own options: --version), likewise."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        _preset(self.get_params(ctx))
        return super().parse_args(ctx, args)
