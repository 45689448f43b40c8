"""What a config file must be before it is read as options: UTF-8 text, valid YAML or TOML, not
nested absurdly deep, and no YAML alias that expands into more values than a config could hold
(a "billion laughs").

Every refusal is a ConfigError naming the file and the line. The alias check walks PyYAML's
composed node graph once, memoising each node's expanded size, so it costs O(size of the file)
however deep the aliases nest; it runs before anything walks the loaded data.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from gradcheck_cli.records.errors import ConfigError

MAX_EXPANDED_VALUES = 100_000
"""More keys and values than any real gradcheck config (a 200-target file holds a few thousand)."""


def read_text(path: Path) -> str:
    """The file as text; not UTF-8 is exit 2 naming the line of the first bad byte."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {column})",
            "save the file as UTF-8",
        ) from None


MAX_FLOW_DEPTH = 64
"""`[`/`{` nesting a YAML config may have: PyYAML's scanner is quadratic in it (a 40 kB file of
brackets takes seconds), and no config needs more than a few levels."""
_COMMENT = re.compile(r"(^|\s)#.*$")


def check_flow_depth(text: str, path: Path) -> None:
    """Refuse deeply nested `[[[...` before PyYAML sees it; comments do not count."""
    depth = 0
    for number, line in enumerate(text.splitlines(), start=1):
        for char in _COMMENT.sub("", line):
            if char in "[{":
                depth += 1
                if depth > MAX_FLOW_DEPTH:
                    raise ConfigError(
                        f"{path}:{number}: nested more than {MAX_FLOW_DEPTH} levels deep",
                        "a gradcheck config is a few options",
                    )
            elif char in "]}":
                depth = max(0, depth - 1)


def toml_error(path: Path, exc: Exception) -> ConfigError:
    """tomllib's message carries `(at line N, column M)`: move the line to the front."""
    text = str(exc)
    match = re.search(r"\(at line (\d+), column (\d+)\)", text)
    if match is None:
        return ConfigError(f"{path}: not valid TOML: {text}", "fix the TOML syntax")
    message = text[: match.start()].strip()
    return ConfigError(
        f"{path}:{match.group(1)}: not valid TOML: {message} (column {match.group(2)})", "fix the TOML syntax"
    )


def yaml_error(path: Path, exc: Exception) -> ConfigError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
    problem = getattr(exc, "problem", None) or str(exc)
    return ConfigError(f"{where}: not valid YAML: {problem}", "fix the YAML syntax")


def check_aliases(node: Any, path: Path) -> None:
    """Refuse a document whose aliases expand beyond MAX_EXPANDED_VALUES, or refer to themselves."""
    sizes: dict[int, int] = {}
    total = _expanded_size(node, sizes, set(), path)
    if total <= MAX_EXPANDED_VALUES:
        return
    culprit = _largest_entry(node, sizes)
    raise ConfigError(
        f"{path}:{culprit.start_mark.line + 1}: YAML aliases (*name) here expand to more than "
        f"{MAX_EXPANDED_VALUES:,} values",
        "a gradcheck config is a few options: write the values out instead of nesting aliases",
    )


def _children(node: Any) -> list[Any]:
    import yaml

    if isinstance(node, yaml.MappingNode):
        return [item for pair in node.value for item in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _expanded_size(node: Any, sizes: dict[int, int], open_nodes: set[int], path: Path) -> int:
    """Values `node` stands for once every alias is expanded; each node's size is computed once."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise ConfigError(
            f"{path}:{node.start_mark.line + 1}: a YAML alias refers to the value that contains it",
            "a gradcheck config cannot hold a recursive value",
        )
    open_nodes.add(key)
    size = 1
    for child in _children(node):
        size += _expanded_size(child, sizes, open_nodes, path)
        if size > MAX_EXPANDED_VALUES:
            break  # enough to refuse; stop before the numbers grow astronomically
    open_nodes.discard(key)
    sizes[key] = size
    return size


def _largest_entry(node: Any, sizes: dict[int, int]) -> Any:
    """Descend from the top into the biggest child while it alone is too big: the offending entry."""
    while True:
        children = [c for c in _children(node) if sizes.get(id(c), 0) > MAX_EXPANDED_VALUES]
        if not children:
            return node
        node = children[0]
