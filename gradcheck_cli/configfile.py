"""Config files: read gradcheck.yaml or [tool.gradcheck] with line numbers, check every key and
type, and turn the file into one AnalyzeConfig per target (flags > file > defaults).

Errors name the file, the line and the key (`gradcheck.yaml:7: unknown key 'batchs'`), with the
closest valid key as the hint, so a typo in CI is a one-line fix.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradcheck_cli.config import (
    DTYPES,
    FAIL_ON,
    FILE_KEYS,
    FORMATS,
    LAYOUTS,
    LOSSES,
    OPTIMIZERS,
    AnalyzeConfig,
    build_config,
    did_you_mean,
    find_default_config,
    values_from_file,
)
from gradcheck_cli.errors import ConfigError, GradcheckError

KeyPath = tuple[str | int, ...]
SEVERITY_CHOICES = ("error", "warning", "info", "off")


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
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10 has no TOML reader in the standard library
        raise ConfigError(
            f"{path}: reading pyproject.toml needs Python 3.11+", "use a gradcheck.yaml"
        ) from None

    try:
        data = tomllib.loads(text).get("tool", {}).get("gradcheck", {})
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return ConfigSource(path=path, data=data, lines=_toml_key_lines(text, data))


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


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_str_or_list(v: Any) -> bool:
    return isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))


def _choice(choices: Sequence[str]) -> tuple[str, Callable[[Any], bool]]:
    return f"one of {', '.join(choices)}", lambda v: v in choices


Check = tuple[str, Callable[[Any], bool]]
_STR: Check = ("a string", lambda v: isinstance(v, str))
_INT: Check = ("an integer", _is_int)
_MAPPING: Check = ("a mapping (key: value)", lambda v: isinstance(v, dict))

# The type each option key must have in a file; keys are the file spellings.
KEY_CHECKS: dict[str, Check] = {
    "target": _STR,
    "input": ("a string or a list of strings", _is_str_or_list),
    "inputs": ("a string or a list of strings", _is_str_or_list),
    "batches": _INT,
    "batch-size": _INT,
    "device": _STR,
    "dtype": _choice(DTYPES),
    "loss": _choice(LOSSES),
    "steps": _INT,
    "lr": ("a number", _is_number),
    "optimizer": _choice(OPTIMIZERS),
    "seed": _INT,
    "format": _choice(FORMATS),
    "output": _STR,
    "fail-on": _choice(FAIL_ON),
    "arch-opt": _MAPPING,
    "init": _MAPPING,
    "model": _MAPPING,
    "target-arg": _STR,
    "layout": _choice(LAYOUTS),
    "thresholds": _MAPPING,
    "try-fixes": ("true or false", lambda v: isinstance(v, bool)),
    "fixes": ("true or false", lambda v: isinstance(v, bool)),
    "baseline": _STR,
    "baseline-orders": ("a number", _is_number),
    "timeout": ("a number of seconds", _is_number),
    "rules": _MAPPING,
    "ignore": ("a list of {id, layers} entries", lambda v: isinstance(v, list)),
    "reports": ("a list of {format, output} entries", lambda v: isinstance(v, list)),
}
TOP_LEVEL_ONLY = ("targets",)


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
            if not _is_str_or_list(value):
                raise ConfigError(f"{source.at(sub)}: {_dotted(sub)!r} must be a string, got {value!r}")
        _check_rule_id(source, str(entry["id"]), (*path, "id"))


def _check_thresholds(source: ConfigSource, thresholds: Mapping[str, Any], keypath: KeyPath) -> None:
    for rule_id, limits in thresholds.items():
        path = (*keypath, str(rule_id))
        _check_rule_id(source, str(rule_id), path)
        if not isinstance(limits, dict) or not all(_is_number(v) for v in limits.values()):
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
        name = str(key).replace("_", "-")
        if name in FILE_KEYS:
            values.update(_option_value(source, key, value, (*keypath, str(key))))
        elif name == "rules":
            values["severity"] = dict(value)
        elif name == "ignore":
            values["ignore"] = tuple(_ignore_entry(e) for e in value)
        elif name == "reports":
            values["reports"] = tuple((str(e["format"]), Path(str(e["output"]))) for e in value)
        elif name == "baseline-orders":
            values["baseline_orders"] = float(value)
    return values


def _option_value(source: ConfigSource, key: str, value: Any, path: KeyPath) -> dict[str, Any]:
    """One option through config.values_from_file, its errors given this key's file and line."""
    try:
        return values_from_file({key: value}, source.path)
    except GradcheckError as error:
        raise ConfigError(f"{source.at(path)}: {_dotted(path)!r}: {error.message}", error.hint) from None


def _ignore_entry(entry: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    layers = entry.get("layers", ())
    return str(entry["id"]), (layers,) if isinstance(layers, str) else tuple(layers)


_MERGED = ("arch_opts", "init_args", "thresholds", "severity")


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if key in _MERGED and key in out:
            value = {**out[key], **value}
        elif key == "ignore" and key in out:
            value = (*out[key], *value)
        out[key] = value
    return out


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
        configs.append(build_config(None, flags, _merge(top, file_values(source, entry, ("targets", index)))))
    return configs
