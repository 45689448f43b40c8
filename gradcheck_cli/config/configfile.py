"""Config files: check every key and type of a file read by `configread`, and turn it into one
AnalyzeConfig per target (flags > file > defaults).

Errors name the file, the line and the key (`gradcheck.yaml:7: unknown key 'batchs'`), with the
closest valid key as the hint, so a typo in CI is a one-line fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from gradcheck_cli.config.analyze_config import AnalyzeConfig, build_config
from gradcheck_cli.config.configread import (
    ConfigSource,
    KeyPath,
    find_default_config,
    read_source,
    shown_path,
)
from gradcheck_cli.config.options import (
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
from gradcheck_cli.config.specs import TargetRef, parse_target
from gradcheck_cli.records.errors import ConfigError, GradcheckError
from gradcheck_cli.records.hints import did_you_mean

__all__ = ["ConfigSource", "find_default_config", "load_configs", "read_source", "shown_path"]

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
        if severity is not False and severity not in SEVERITY_CHOICES:  # YAML reads `off` as false
            raise ConfigError(
                f"{source.at(path)}: {_dotted(path)!r} must be one of {', '.join(SEVERITY_CHOICES)}, "
                f"got {severity!r}",
                did_you_mean(str(severity), SEVERITY_CHOICES),
            )


def _check_ignores(source: ConfigSource, entries: Sequence[Any], keypath: KeyPath) -> None:
    for index, entry in enumerate(entries):
        path = (*keypath, index)
        if isinstance(entry, str):
            _check_rule_id(source, entry, path)
            continue
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
    from gradcheck_cli.judge.rules import all_rules

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
    target: str | None,
    flags: Mapping[str, Any],
    config_path: Path | None,
    cwd: Path,
    only: str | None = None,
) -> list[AnalyzeConfig]:
    """One AnalyzeConfig per target: a TARGET argument, else the file's `targets:` list (or the one
    `--target NAME` picks), else its `target:`. Flags win over the file, the file over the defaults.

    Paths in a config file are relative to the file's folder. An ad-hoc TARGET takes the settings
    of a configured target with the same file, but never writes the configured report files."""
    path = config_path or find_default_config(cwd)
    if path is None:
        if only is not None:
            raise ConfigError(
                f"--target {only}: no config file here",
                "put a gradcheck.yaml with `targets:` next to the models",
            )
        return [build_config(target, flags, {})]
    source = read_source(path)
    top, entries = scoped_values(source, cwd)
    if target is not None:
        ref = parse_target(target)
        same = [values for values in entries if _same_target(values.get("target"), ref, cwd)]
        values = {k: v for k, v in (same[0] if same else top).items() if k not in ("reports", "output")}
        return [build_config(target, flags, values)]
    if only is not None:
        entries = [pick_target(source, entries or [top], only)]
    if not entries:
        return [build_config(None, flags, top)]
    return [build_config(None, flags, values) for values in entries]


def scoped_values(source: ConfigSource, cwd: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The file's top-level values and, for each `targets:` entry, the top merged with the entry;
    relative paths resolved from the file's folder."""
    base = source.path.parent
    shared = {k: v for k, v in source.data.items() if k != "targets"}
    top = rebase(file_values(source, shared, ()), base, cwd)
    raw = source.data.get("targets") or []
    if not isinstance(raw, list):
        raise ConfigError(f"{source.at(('targets',))}: 'targets' must be a list of mappings")
    entries = []
    for index, entry in enumerate(raw):
        entry = {"target": entry} if isinstance(entry, str) else entry
        if not isinstance(entry, dict):
            raise ConfigError(f"{source.at(('targets', index))}: 'targets[{index}]' must be a mapping")
        entries.append(merge(top, rebase(file_values(source, entry, ("targets", index)), base, cwd)))
    return top, entries


def pick_target(source: ConfigSource, entries: list[dict[str, Any]], only: str) -> dict[str, Any]:
    """The configured target `--target NAME` names: by `name:`, by its target, or by file name."""
    for values in entries:
        ref = values.get("target")
        names = {values.get("name"), getattr(ref, "raw", None), getattr(ref, "location", None)}
        if ref is not None and ref.kind == "file":
            names.add(Path(ref.location).stem)
        if only in names:
            return values
    known = [str(v.get("name") or getattr(v.get("target"), "raw", "?")) for v in entries]
    raise ConfigError(
        f"--target {only}: {shown_path(source.path)} configures no such target",
        did_you_mean(only, known) or f"configured: {', '.join(known) or 'none'}",
    )


def _same_target(ref: TargetRef | None, given: TargetRef, cwd: Path) -> bool:
    if ref is None or ref.kind != given.kind:
        return False
    if ref.kind != "file":
        return ref.location == given.location
    return (cwd / ref.location).resolve() == (cwd / given.location).resolve()


def rebase(values: dict[str, Any], base: Path, cwd: Path) -> dict[str, Any]:
    """File-relative paths (target file, output, baseline, reports) as paths from `cwd`."""
    out = dict(values)
    for name in ("output", "baseline"):
        if isinstance(out.get(name), Path):
            out[name] = _from_base(out[name], base, cwd)
    if "reports" in out:
        out["reports"] = tuple((fmt, _from_base(file, base, cwd)) for fmt, file in out["reports"])
    ref = out.get("target")
    if isinstance(ref, TargetRef) and ref.kind == "file" and not Path(ref.location).is_absolute():
        location = str(_from_base(Path(ref.location), base, cwd))
        if location != ref.location:
            raw = location + ref.raw.strip()[len(ref.location) :]
            out["target"] = replace(ref, raw=raw, location=location)
    return out


def _from_base(path: Path, base: Path, cwd: Path) -> Path:
    """`base / path` as a path relative to `cwd` when it lies below it, else absolute."""
    full = (base / path).resolve()
    return Path(shown_path(full))
