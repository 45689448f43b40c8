"""Pure string parsing of TARGET and --input, so bad syntax exits 2 before torch loads."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from gradcheck_cli.records.errors import ConfigError, InputError

TargetKind = Literal["file", "module", "builtin"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetRef:
    raw: str
    kind: TargetKind
    location: str
    """A file path, a dotted module name, or the builtin's name."""
    name: str | None = None
    """An attribute of the file or module (factory, class or instance)."""
    call: str | None = None
    """A call expression evaluated against the file, e.g. 'RNNModel("LSTM", 10)'."""


_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def parse_target(raw: str) -> TargetRef:
    text = raw.strip()
    if not text:
        raise ConfigError("TARGET is empty", "give a model file, e.g. `gradcheck analyze model.py`")
    if text.startswith("builtin:"):
        name = text.removeprefix("builtin:").strip()
        if not name:
            raise ConfigError("`builtin:` needs a name", "run `gradcheck zoo` to list them")
        return TargetRef(raw=raw, kind="builtin", location=name)
    location, sep, rest = _split_location(text)
    rest = rest.strip()
    name_or_none: str | None = None
    call: str | None = None
    if sep:
        name_or_none, call = _split_name(rest, raw)
    if location.endswith(".py") or "/" in location or "\\" in location:
        return TargetRef(raw=raw, kind="file", location=location, name=name_or_none, call=call)
    if _DOTTED.match(location) and sep:
        return TargetRef(raw=raw, kind="module", location=location, name=name_or_none, call=call)
    raise ConfigError(
        f"cannot read TARGET {raw!r}",
        "use model.py, model.py:NAME, pkg.module:NAME or builtin:NAME",
    )


def _split_location(text: str) -> tuple[str, str, str]:
    """Split at the ':' that ends the file or module part (a call may contain ':' too)."""
    match = re.match(r"^(.*?\.py)(:)(.*)$", text, flags=re.S)
    if match:
        return match.group(1), match.group(2), match.group(3)
    if "(" in text:
        head, _, _ = text.partition("(")
        location, sep, name = head.rpartition(":")
        if sep:
            return location, sep, text[len(location) + 1 :]
    return text.partition(":")


def _split_name(rest: str, raw: str) -> tuple[str | None, str | None]:
    if not rest:
        raise ConfigError(f"TARGET {raw!r} ends with ':' but names nothing")
    if "(" in rest:
        head = rest.partition("(")[0].strip()
        if not _DOTTED.match(head) or not rest.rstrip().endswith(")"):
            raise ConfigError(f"cannot read the call in TARGET {raw!r}", "e.g. 'model.py:Net(10, depth=4)'")
        return head, rest
    if not _DOTTED.match(rest):
        raise ConfigError(f"{rest!r} in TARGET {raw!r} is not a Python name")
    return rest, None


@dataclass(frozen=True, slots=True, kw_only=True)
class InputSpec:
    shape: tuple[int, ...]
    kind: Literal["float", "int"] = "float"
    low: float | None = None
    high: float | None = None
    """For int: exclusive upper bound of the values. For float: the range's upper end."""

    def __str__(self) -> str:
        text = f"{self.kind}:{'x'.join(map(str, self.shape))}"
        if self.kind == "int" and self.high is not None:
            return f"{text}:{int(self.high)}"
        if self.low is not None and self.high is not None:
            return f"{text}:{self.low:g}..{self.high:g}"
        return text


_INPUT_HINT = "examples: 32x784, 8x3x32x32, int:4x64:1000 (tokens below 1000), float:16x784:0..1"
INT64_MAX = 2**63 - 1
MAX_ELEMENTS = 2**32
"""The documented upper bound of one input's elements (16 GiB of float32, 32 GiB of int64): a
batch larger than this is not a sample batch; refused before anything is allocated."""


def parse_input(raw: str) -> InputSpec:
    parts = raw.strip().split(":")
    kind = "float"
    if parts[0] in ("int", "float", "long"):
        kind = "int" if parts[0] in ("int", "long") else "float"
        parts = parts[1:]
    if not parts or len(parts) > 2:
        raise InputError(f"cannot read --input {raw!r}", _INPUT_HINT)
    shape = _parse_shape(parts[0], raw)
    if kind == "int":
        bound = _parse_int_high(parts[1] if len(parts) == 2 else None, raw)
        return InputSpec(shape=shape, kind="int", low=0, high=bound)
    if len(parts) == 2:
        low, high = _parse_range(parts[1], raw)
        return InputSpec(shape=shape, kind="float", low=low, high=high)
    return InputSpec(shape=shape, kind="float")


def parse_labels(raw: str) -> InputSpec:
    """--labels SPEC: the --input syntax (int:16:10, int:16x32:50257, float:16), named as --labels."""
    try:
        return parse_input(raw)
    except InputError as exc:
        raise InputError(exc.message.replace("--input", "--labels"), exc.hint) from None


def _parse_shape(text: str, raw: str) -> tuple[int, ...]:
    dims = text.lower().replace("*", "x").split("x")
    if not all(d.strip().isdigit() and int(d) > 0 for d in dims):
        raise InputError(f"cannot read the shape {text!r} in --input {raw!r}", _INPUT_HINT)
    shape = tuple(int(d) for d in dims)
    elements = 1
    for dim in shape:
        elements *= dim
    if elements > MAX_ELEMENTS:
        raise InputError(
            f"--input {raw!r} has {elements:.3g} elements: too large to allocate for a sample batch "
            f"(the upper bound is {MAX_ELEMENTS} (2^32) elements per input)",
            "give the shape of one training batch, e.g. 32x784",
        )
    return shape


def _parse_int_high(text: str | None, raw: str) -> int:
    if text is None:
        raise InputError(
            f"--input {raw!r} is an integer input without an upper bound",
            "add the number of classes or tokens, e.g. int:4x64:1000",
        )
    if not text.strip().isdigit() or int(text) < 1:
        raise InputError(f"the upper bound {text!r} in --input {raw!r} is not a positive integer")
    if int(text) > INT64_MAX:
        raise InputError(
            f"the upper bound {text} in --input {raw!r} does not fit a 64-bit integer tensor",
            f"use at most {INT64_MAX} (the vocabulary or class count, e.g. int:4x64:50257)",
        )
    return int(text)


def _parse_range(text: str, raw: str) -> tuple[float, float]:
    low, sep, high = text.partition("..")
    try:
        lo, hi = float(low), float(high)
    except ValueError:
        lo = hi = float("nan")
    if not sep or not lo < hi:
        raise InputError(
            f"cannot read the range {text!r} in --input {raw!r}", "write it as LOW..HIGH, e.g. 0..1"
        )
    if not (math.isfinite(lo) and math.isfinite(hi)) or not math.isfinite(hi - lo):
        raise InputError(
            f"the range {text!r} in --input {raw!r} is not finite: inputs are drawn uniformly from it",
            "give finite bounds, e.g. -1..1",
        )
    return lo, hi
