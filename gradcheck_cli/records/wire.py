"""The worker's messages as data: JSON, read back against the record types as a schema.

The analysis process runs the user's code, so whatever it sends is untrusted input. A message is
one JSON object (never a pickle: nothing in it can run when it is read), and it is turned back into
a record only through the record's own type hints: every dataclass field present and of its declared
type (int, float, str, bool, None, an Enum or Literal value, a tuple, a mapping with string keys, a
nested record), no unknown field, no other kind of object. Anything else is a `WireError`.

    {"kind": "stage", "index": 0, "text": "measuring 3 batches on cpu"}
    {"kind": "report", "index": 0, "report": {...Report...}}
    {"kind": "failure", "index": 0, "failure": {...TargetFailure...}}
    {"kind": "scale", "index": 0, "report": {...ScaleReport...}}    (`gradcheck scale`)
    {"kind": "done"}

Torch-free.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import json
import types
import typing
from functools import cache
from typing import Any, Literal, Union

from gradcheck_cli.records.outcome import TargetFailure
from gradcheck_cli.records.report import Report
from gradcheck_cli.records.scaling import ScaleReport

MAX_MESSAGE_BYTES = 256 << 20
"""A message larger than this is refused unread (a report of a 10^5-layer model is ~100 MiB)."""


class WireError(ValueError):
    """A message that is not what the protocol allows."""


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(_plain(message), separators=(",", ":")).encode()


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, collections.abc.Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)  # nothing else crosses: evidence and init arguments are JSON-safe already


_SCHEMA: dict[str, dict[str, Any]] = {
    "stage": {"index": int, "text": str},
    "report": {"index": int, "report": Report},
    "scale": {"index": int, "report": ScaleReport},
    "failure": {"index": int, "failure": TargetFailure},
    "done": {},
}


def decode(data: bytes) -> tuple[Any, ...]:
    """("stage", index, text), ("report", index, Report), ("failure", index, TargetFailure), ("done",)."""
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise WireError(f"not a JSON message ({str(exc)[:80]})") from None
    if not isinstance(raw, dict) or raw.get("kind") not in _SCHEMA:
        raise WireError("a message without a known kind")
    kind = raw.pop("kind")
    fields = _SCHEMA[kind]
    if set(raw) != set(fields):
        raise WireError(f"a {kind!r} message with the fields {sorted(raw)}, expected {sorted(fields)}")
    return (kind, *(_read(hint, raw[name], f"{kind}.{name}") for name, hint in fields.items()))


def _read(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any or hint is object:
        return value  # already plain JSON data
    if origin in (Union, types.UnionType):
        return _read_union(typing.get_args(hint), value, where)
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise WireError(f"{where}: {value!r} is not one of {typing.get_args(hint)}")
        return value
    if origin is tuple:
        return _read_tuple(typing.get_args(hint), value, where)
    if origin in (collections.abc.Sequence, list):  # evidence: lists, as the rules write them
        (item,) = typing.get_args(hint)
        return list(_read(item, v, f"{where}[{i}]") for i, v in enumerate(_expect(list, value, where)))
    if origin in (dict, collections.abc.Mapping):
        _, item = typing.get_args(hint)
        return {k: _read(item, v, f"{where}.{k}") for k, v in _expect(dict, value, where).items()}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _read_record(hint, value, where)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            raise WireError(f"{where}: {value!r} is not a {hint.__name__}") from None
    return _read_scalar(hint, value, where)


def _read_scalar(hint: Any, value: Any, where: str) -> Any:
    if hint is type(None) or hint is None:
        if value is None:
            return None
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        raise WireError(f"{where}: the type {hint!r} cannot cross the process boundary")
    raise WireError(f"{where}: {type(value).__name__} where {getattr(hint, '__name__', hint)} belongs")


def _read_union(options: tuple[Any, ...], value: Any, where: str) -> Any:
    if value is None and type(None) in options:
        return None
    problems = []
    for option in options:
        if option is type(None):
            continue
        try:
            return _read(option, value, where)
        except WireError as exc:
            problems.append(str(exc))
    raise WireError(problems[0] if len(problems) == 1 else f"{where}: none of {options} fits")


def _read_tuple(items: tuple[Any, ...], value: Any, where: str) -> tuple[Any, ...]:
    values = _expect(list, value, where)
    if len(items) == 2 and items[1] is Ellipsis:
        return tuple(_read(items[0], v, f"{where}[{i}]") for i, v in enumerate(values))
    if len(items) != len(values):
        raise WireError(f"{where}: {len(values)} items where {len(items)} belong")
    return tuple(_read(h, v, f"{where}[{i}]") for i, (h, v) in enumerate(zip(items, values, strict=True)))


def _read_record(cls: type, value: Any, where: str) -> Any:
    fields = _fields(cls)
    given = _expect(dict, value, where)
    if set(given) != set(fields):
        missing, extra = sorted(set(fields) - set(given)), sorted(set(given) - set(fields))
        raise WireError(f"{where}: a {cls.__name__} with missing {missing} or unknown {extra} fields")
    return cls(**{name: _read(hint, given[name], f"{where}.{name}") for name, hint in fields.items()})


@cache
def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _expect(kind: type, value: Any, where: str) -> Any:
    if not isinstance(value, kind):
        raise WireError(f"{where}: {type(value).__name__} where a {kind.__name__} belongs")
    if isinstance(value, dict) and not all(isinstance(key, str) for key in value):
        raise WireError(f"{where}: a mapping with keys that are not strings")
    return value


def as_fields(message: tuple[Any, ...]) -> dict[str, Any]:
    """("report", 0, report) -> {"kind": "report", "index": 0, "report": report}: what `encode` takes."""
    kind, *values = message
    return {"kind": kind, **dict(zip(_SCHEMA[kind], values, strict=True))}


def nothing_measured(report: Report | ScaleReport) -> bool:
    """No layer whose gradients were measured: such a report can say nothing about gradient flow
    (a width sweep: no module with an exponent)."""
    if isinstance(report, ScaleReport):
        return not any(m.status != "unchecked" for m in report.modules)
    return not any(row.stats.measured and row.stats.hooked for row in report.layers)


def inconsistent(report: Report | ScaleReport) -> str | None:
    """Why the report's summary cannot be the one its findings make (None: it can)."""
    from gradcheck_cli.records.report import summarize

    expected, got = summarize(report.findings), report.summary
    if (got.status, got.errors, got.warnings, got.infos) != (
        expected.status,
        expected.errors,
        expected.warnings,
        expected.infos,
    ):
        return f"its summary ({report.summary.status}) is not what its findings make ({expected.status})"
    return None
