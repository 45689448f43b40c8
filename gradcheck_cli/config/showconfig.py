"""`gradcheck analyze --show-config`: the merged configuration of each target, every value with
where it came from (a flag, `file:line`, or the default), as YAML a person can read and paste."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gradcheck_cli.config.options import OPTIONS, effective_options


def show_config(
    target: str | None, flags: Mapping[str, Any], config_path: Path | None, cwd: Path, only: str | None
) -> str:
    from gradcheck_cli.config.configfile import find_default_config, load_configs, read_source

    configs = load_configs(target, flags, config_path, cwd, only)
    path = config_path or find_default_config(cwd)
    source = read_source(path) if path is not None else None
    scopes = _entry_scopes(source, configs, target is not None)
    shown = _shown(path, cwd)
    lines = [f"# gradcheck configuration: defaults < {shown or 'no config file'} < command line"]
    lines.append("# each value's origin is on its right: a flag, file:line, or default")
    several = len(configs) > 1
    for config, scope in zip(configs, scopes, strict=True):
        rows = _rows(config, flags, source, scope, cwd)
        width = max(len(text) for text, _ in rows) + 2
        for i, (text, origin) in enumerate(rows):
            indent = ("- " if i == 0 else "  ") if several else ""
            lines.append(f"{indent}{text:<{width}}# {origin}")
    return "\n".join(lines) + "\n"


def _entry_scopes(source: Any, configs: list[Any], ad_hoc: bool) -> list[int | None]:
    """Which `targets:` entry each config came from (None: the top level only)."""
    entries = (source.data.get("targets") or []) if source is not None else []
    if ad_hoc or not entries:
        return [None] * len(configs)
    raws = [str(e.get("target") if isinstance(e, dict) else e) for e in entries]
    names = [e.get("name") if isinstance(e, dict) else None for e in entries]
    out: list[int | None] = []
    for config in configs:
        index = next((i for i, n in enumerate(names) if n and n == config.name), None)
        if index is None:
            index = next((i for i, raw in enumerate(raws) if config.target.raw.endswith(raw)), None)
        out.append(index)
    return out


def _rows(
    config: Any, flags: Mapping[str, Any], source: Any, scope: int | None, cwd: Path
) -> list[tuple[str, str]]:
    import yaml

    values = effective_options(config)
    rows = []
    for option in OPTIONS:
        if option.key is None or option.key not in values:
            continue
        value = _as_written(option.key, values[option.key])
        text = yaml.safe_dump({option.key: value}, default_flow_style=True, width=10_000).strip()[1:-1]
        rows.append((text, _origin(option, flags, source, scope, cwd)))
    return rows


def _as_written(key: str, value: Any) -> Any:
    """reports and ignore in the spelling a config file uses."""
    if key == "reports":
        return [{"format": fmt, "output": out} for fmt, out in value]
    if key == "ignore":
        return [rule_id if not globs else {"id": rule_id, "layers": list(globs)} for rule_id, globs in value]
    return value


def _origin(option: Any, flags: Mapping[str, Any], source: Any, scope: int | None, cwd: Path) -> str:
    if flags.get(option.field) is not None and option.flag:
        return option.flag
    if source is None:
        return "default"
    for keypath in ((("targets", scope),) if scope is not None else ()) + ((),):
        for key in option.keys:
            scoped = source.data if not keypath else source.data["targets"][scope]
            if isinstance(scoped, dict) and key in scoped:
                return str(source.at((*keypath, key)))
    return "default"


def _shown(path: Path | None, cwd: Path) -> str:
    from gradcheck_cli.config.configfile import shown_path

    return "" if path is None else shown_path(path)
