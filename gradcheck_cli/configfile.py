"""Config files: read gradcheck.yaml or [tool.gradcheck] with line numbers, check every key and
type, and turn the file into one AnalyzeConfig per target (flags > file > defaults).

Errors name the file, the line and the key (`gradcheck.yaml:7: unknown key 'batchs'`), with the
closest valid key as the hint, so a typo in CI is a one-line fix.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradcheck_cli.config import AnalyzeConfig, build_config
from gradcheck_cli.errors import ConfigError, GradcheckError
from gradcheck_cli.hints import did_you_mean
from gradcheck_cli.options import (
    BY_KEY,
    FORMATS,
    SEVERITY_CHOICES,
    TOP_LEVEL_ONLY,
    FileCheck,
    is_number,
    is_str_or_list,
    merge,
    values_from_file,
)

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
                return f"{self.path}:{self.lines[keypath[:end]]}"
        return str(self.path)


# --- reading, with line numbers ------------------------------------------------------------------


def read_source(path: Path) -> ConfigSource:
    if not path.is_file():
        raise ConfigError(f"config file {path} not found", "check the path given to --config")
    text = path.read_text()
    if path.name == "pyproject.toml":
        return _pyproject_source(path, text)
    return _yaml_source(path, text)


def _yaml_source(path: Path, text: str) -> ConfigSource:
    import yaml

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
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
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [tool.gradcheck] must be a table of options")
    return section


def find_default_config(cwd: Path) -> Path | None:
    """gradcheck.yaml in the working directory, else a pyproject.toml with [tool.gradcheck]."""
    for name in ("gradcheck.yaml", "gradcheck.yml"):
        if (cwd / name).is_file():
            return cwd / name
    pyproject = cwd / "pyproject.toml"
    if pyproject.is_file() and _configures_gradcheck(pyproject):
        return pyproject
    return None


def _configures_gradcheck(pyproject: Path) -> bool:
    """Whether pyproject.toml has [tool.gradcheck]. A broken pyproject.toml that never mentions
    tool.gradcheck is another tool's business and must not stop `gradcheck analyze`; one that
    does is an error naming the file, since its settings cannot be read."""
    raw = pyproject.read_bytes()
    if b"tool.gradcheck" not in raw:
        return False
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{pyproject}:{line}: not UTF-8 text", "fix the file, or pass --config FILE"
        ) from None
    return bool(_tool_section(pyproject, text))


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


# --- checking keys and types ---------------------------------------------------------------------


KEY_CHECKS: dict[str, FileCheck] = {key: o.file_check for key, o in BY_KEY.items() if o.file_check}
"""The type each config-file key must have (from the option table)."""


def check_options(source: ConfigSource, options: Mapping[str, Any], keypath: KeyPath) -> None:
    """Every key known, every value of the right type; the error names file, line and key."""
    allowed = list(KEY_CHECKS) + (list(TOP_LEVEL_ONLY) if not keypath else [])
    for key, value in options.items():
        name = str(key).replace("_", "-")
        path = (*keypath, str(key))
        if name not in allowed:
            raise ConfigError(
                f"{source.at(path)}: unknown key {_dotted(path)!r}",
                did_you_mean(name, allowed) or f"valid keys: {', '.join(allowed)}",
            )
        if name in TOP_LEVEL_ONLY:
            continue
        what, ok = KEY_CHECKS[name]
        if not ok(value):
            raise ConfigError(f"{source.at(path)}: {_dotted(path)!r} must be {what}, got {value!r}")
    _check_rules(source, options.get("rules") or {}, (*keypath, "rules"))
    _check_ignores(source, options.get("ignore") or [], (*keypath, "ignore"))
    _check_thresholds(source, options.get("thresholds") or {}, (*keypath, "thresholds"))
    _check_reports(source, options.get("reports") or [], (*keypath, "reports"))


def _check_reports(source: ConfigSource, entries: Sequence[Any], keypath: KeyPath) -> None:
    for index, entry in enumerate(entries):
        path = (*keypath, index)
        if not isinstance(entry, dict) or set(entry) != {"format", "output"}:
            raise ConfigError(
                f"{source.at(path)}: {_dotted(path)!r} must be a mapping with 'format' and 'output'",
                "e.g. reports: [{format: junit, output: reports/gradcheck.xml}]",
            )
        if entry["format"] not in FORMATS:
            sub = (*path, "format")
            raise ConfigError(
                f"{source.at(sub)}: {_dotted(sub)!r} must be one of {', '.join(FORMATS)}, got {entry['format']!r}",
                did_you_mean(str(entry["format"]), FORMATS),
            )


def _check_rules(source: ConfigSource, rules: Mapping[str, Any], keypath: KeyPath) -> None:
    for rule_id, severity in rules.items():
        path = (*keypath, str(rule_id))
        _check_rule_id(source, str(rule_id), path)
        if severity not in SEVERITY_CHOICES:
            raise ConfigError(
                f"{source.at(path)}: {_dotted(path)!r} must be one of {', '.join(SEVERITY_CHOICES)}, "
                f"got {severity!r}",
                did_you_mean(str(severity), SEVERITY_CHOICES),
            )


def _check_ignores(source: ConfigSource, entries: Sequence[Any], keypath: KeyPath) -> None:
    for index, entry in enumerate(entries):
        path = (*keypath, index)
        if not isinstance(entry, dict) or "id" not in entry:
            raise ConfigError(
                f"{source.at(path)}: {_dotted(path)!r} must be a mapping with an 'id' (and optional 'layers')",
                'e.g. ignore: [{id: no-gradient, layers: "teacher.*"}]',
            )
        for key, value in entry.items():
            sub = (*path, str(key))
            if key not in ("id", "layers"):
                raise ConfigError(
                    f"{source.at(sub)}: unknown key {_dotted(sub)!r}",
                    did_you_mean(str(key), ("id", "layers")) or "an ignore entry has 'id' and 'layers'",
                )
            if not is_str_or_list(value):
                raise ConfigError(f"{source.at(sub)}: {_dotted(sub)!r} must be a string, got {value!r}")
        _check_rule_id(source, str(entry["id"]), (*path, "id"))


def _check_thresholds(source: ConfigSource, thresholds: Mapping[str, Any], keypath: KeyPath) -> None:
    for rule_id, limits in thresholds.items():
        path = (*keypath, str(rule_id))
        _check_rule_id(source, str(rule_id), path)
        if not isinstance(limits, dict) or not all(is_number(v) for v in limits.values()):
            raise ConfigError(f"{source.at(path)}: {_dotted(path)!r} must map threshold names to numbers")


def _check_rule_id(source: ConfigSource, rule_id: str, path: KeyPath) -> None:
    from gradcheck_cli.rules import all_rules

    ids = [r.id for r in all_rules()]
    if rule_id not in ids:
        raise ConfigError(
            f"{source.at(path)}: unknown finding id {rule_id!r} in {_dotted(path[:-1])!r}",
            did_you_mean(rule_id, ids) or f"finding ids: {', '.join(ids)}",
        )


def _dotted(path: KeyPath) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(path))


# --- files to configs ----------------------------------------------------------------------------


def file_values(source: ConfigSource, options: Mapping[str, Any], keypath: KeyPath) -> dict[str, Any]:
    """Checked file options -> AnalyzeConfig field values."""
    check_options(source, options, keypath)
    values: dict[str, Any] = {}
    for key, value in options.items():
        values.update(_option_value(source, key, value, (*keypath, str(key))))
    return values


def _option_value(source: ConfigSource, key: str, value: Any, path: KeyPath) -> dict[str, Any]:
    """One option through its normaliser, its errors given this key's file and line."""
    try:
        return values_from_file({key: value}, source.path)
    except GradcheckError as error:
        raise ConfigError(f"{source.at(path)}: {_dotted(path)!r}: {error.message}", error.hint) from None


def load_configs(
    target: str | None, flags: Mapping[str, Any], config_path: Path | None, cwd: Path
) -> list[AnalyzeConfig]:
    """One AnalyzeConfig per target: a TARGET argument, else the file's `targets:` list, else
    its `target:`. Flags win over the file, the file over the defaults."""
    path = config_path or find_default_config(cwd)
    if path is None:
        return [build_config(target, flags, {})]
    source = read_source(path)
    shared = {k: v for k, v in source.data.items() if k != "targets"}
    top = file_values(source, shared, ())
    entries = source.data.get("targets")
    if target is not None or not entries:
        return [build_config(target, flags, top)]
    if not isinstance(entries, list):
        raise ConfigError(f"{source.at(('targets',))}: 'targets' must be a list of mappings")
    configs = []
    for index, entry in enumerate(entries):
        entry = {"target": entry} if isinstance(entry, str) else entry
        if not isinstance(entry, dict):
            raise ConfigError(f"{source.at(('targets', index))}: 'targets[{index}]' must be a mapping")
        configs.append(build_config(None, flags, merge(top, file_values(source, entry, ("targets", index)))))
    return configs
