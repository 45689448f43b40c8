"""What a report prints comes from the user's model (module names, class names, messages quoting
them): neutralise it for each medium before it is printed.

- `visible`: control characters (C0, DEL, C1: the ESC of ANSI/OSC sequences, NUL, BEL) and
  characters XML 1.0 forbids become visible `\\x1b`-style escapes, so a name can neither drive the
  terminal nor make a JUnit file unparseable. `clean_report` applies it to every string in a Report.
- `md_text` / `md_code`: Markdown text is HTML-escaped; names go in code spans whose fence is
  longer than any backtick run inside, so no raw HTML from a name reaches a PR comment or
  $GITHUB_STEP_SUMMARY.
The terminal renderer additionally passes names as rich `Text`, never as markup (`[bold]` stays text).
"""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import Mapping
from enum import Enum
from typing import Any, TypeVar

# C0 controls but tab and newline, DEL, C1 controls, lone surrogates, and U+FFFE/U+FFFF.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_UNSAFE_OR_NEWLINE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")

T = TypeVar("T")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str, keep_newlines: bool = True) -> str:
    """`text` with every control character shown as an escape (`\\x1b`), tab and newline kept."""
    pattern = _UNSAFE if keep_newlines else _UNSAFE_OR_NEWLINE
    return pattern.sub(_escaped, text)


def xml_safe(text: str) -> str:
    """Valid XML 1.0 character data whatever `text` holds."""
    return _UNSAFE.sub(_escaped, text.replace("\r", "\\r"))


def clean_report(report: T) -> T:
    """A copy of a report (any dataclass tree) with `visible` applied to every string in it."""
    return _clean(report)


def _clean(value: Any) -> Any:
    if isinstance(value, Enum):
        return value
    if isinstance(value, str):
        return visible(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: _clean(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        return dataclasses.replace(value, **changes)
    if isinstance(value, tuple):
        return tuple(_clean(v) for v in value)
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, Mapping):
        return {_clean(k): _clean(v) for k, v in value.items()}
    return value


_MARKDOWN_ACTIVE = re.compile(r"([\\`*\[\]~])")


def md_text(text: str) -> str:
    """Markdown prose: one line, control characters shown, HTML escaped, and the characters that
    open code, emphasis, links or strike-through backslash-escaped (a name cannot make a link)."""
    one_line = visible(" ".join(text.splitlines()))
    return _MARKDOWN_ACTIVE.sub(r"\\\1", html.escape(one_line, quote=False))


def md_code(text: str) -> str:
    """A code span that shows `text` literally, backticks and HTML included."""
    text = visible(text, keep_newlines=False)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"
