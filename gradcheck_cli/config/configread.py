"""Reading a config file with the line of every key: gradcheck.yaml (PyYAML's node marks) or
[tool.gradcheck] in pyproject.toml (tomllib, or tomli on Python 3.10: the one pyproject reader)."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradcheck_cli.config import config_guard
from gradcheck_cli.records.errors import ConfigError
from gradcheck_cli.records.files import check_regular

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigSource:
    """A parsed config file and the line of every key in it."""

    path: Path
    data: dict[str, Any]
    lines: Mapping[KeyPath, int]

    def at(self, keypath: KeyPath) -> str:
        """`file:line` of a key, falling back to its parent's line."""
        for end in range(len(keypath), 0, -1):
            if keypath[:end] in self.lines:
                return f"{shown_path(self.path)}:{self.lines[keypath[:end]]}"
        return shown_path(self.path)


def shown_path(path: Path) -> str:
    """A path as messages print it: relative to the working directory."""
    if not path.is_absolute():
        return str(path)
    try:
        relative = os.path.relpath(path, Path.cwd())  # where files are opened and printed from
    except ValueError:  # another drive on Windows
        return str(path)
    # Below the working directory a path reads best relative; outside it, whole (a `../..` form
    # would depend on where the command happened to run, and so would every message naming it).
    return str(path) if relative == os.pardir or relative.startswith(os.pardir + os.sep) else relative


def read_source(path: Path) -> ConfigSource:
    check_regular(path, "config file", ConfigError)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found", "check the path given to --config")
    text = config_guard.read_text(path)
    if path.name == "pyproject.toml":
        return _pyproject_source(path, text)
    return _yaml_source(path, text)


def _yaml_source(path: Path, text: str) -> ConfigSource:
    import yaml

    config_guard.check_flow_depth(text, path)
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                config_guard.check_aliases(node, path)  # before anything walks the data
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise config_guard.yaml_error(path, exc) from None
    except RecursionError:
        raise ConfigError(
            f"{path}: the YAML is nested too deeply", "a gradcheck config is a few options"
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: expected a mapping of options at the top level")
    lines: dict[KeyPath, int] = {}
    _record_lines(node, (), lines)
    return ConfigSource(path=path, data=data, lines=lines)


def _record_lines(node: Any, keypath: KeyPath, lines: dict[KeyPath, int]) -> None:
    """Walk PyYAML's node tree (which keeps start marks) and note the line of each key."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = (*keypath, str(key_node.value))
            lines[path] = key_node.start_mark.line + 1
            _record_lines(value_node, path, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            item_path = (*keypath, index)
            lines[item_path] = item.start_mark.line + 1
            _record_lines(item, item_path, lines)


def _pyproject_source(path: Path, text: str) -> ConfigSource:
    data = _tool_section(path, text)
    return ConfigSource(path=path, data=data, lines=_toml_key_lines(text, data))


def _tool_section(path: Path, text: str) -> dict[str, Any]:
    """[tool.gradcheck] of a pyproject.toml ({} when absent): the one pyproject reader."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10: the tomli backport (a dependency there)
        import tomli as tomllib

    try:
        section = tomllib.loads(text).get("tool", {}).get("gradcheck", {})
    except tomllib.TOMLDecodeError as exc:
        raise config_guard.toml_error(path, exc) from None
    except RecursionError:
        raise ConfigError(
            f"{path}: the TOML is nested too deeply", "a gradcheck config is a few options"
        ) from None
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [tool.gradcheck] must be a table of options")
    return section


def find_default_config(cwd: Path) -> Path | None:
    """gradcheck.yaml in the working directory, else a pyproject.toml with [tool.gradcheck]."""
    for name in ("gradcheck.yaml", "gradcheck.yml"):
        check_regular(cwd / name, "config file", ConfigError)
        if (cwd / name).is_file():
            return cwd / name
    pyproject = cwd / "pyproject.toml"
    # A pyproject.toml without our section is not ours to judge: a broken one of another tool's
    # must not break every analyze, so it is not even parsed.
    ours = pyproject.is_file() and b"tool.gradcheck" in pyproject.read_bytes()
    if ours and _tool_section(pyproject, config_guard.read_text(pyproject)):
        return pyproject
    return None


def _toml_key_lines(text: str, data: Mapping[str, Any]) -> dict[KeyPath, int]:
    """tomllib keeps no positions: find each top-level key's first `key =` line after the
    [tool.gradcheck...] header (good enough to point a person at the right line)."""
    rows = text.splitlines()
    start = next((i for i, row in enumerate(rows) if row.strip().startswith("[tool.gradcheck")), 0)
    lines: dict[KeyPath, int] = {}
    for key in data:
        pattern = re.compile(
            rf"^\s*\"?{re.escape(str(key))}\"?\s*=|^\s*\[+tool\.gradcheck\.{re.escape(str(key))}\]"
        )
        for i in range(start, len(rows)):
            if pattern.match(rows[i]):
                lines[(str(key),)] = i + 1
                break
    return lines
