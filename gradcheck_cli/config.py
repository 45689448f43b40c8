"""AnalyzeConfig and how it is assembled: defaults < config file < command-line flags."""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from gradcheck_cli.errors import ConfigError
from gradcheck_cli.specs import InputSpec, TargetRef, parse_input, parse_target

DEVICES_HINT = "auto, cpu, cuda, cuda:N or mps"
DTYPES = ("float32", "float64", "bfloat16", "float16")
LOSSES = ("auto", "ce", "mse", "sum", "output")
FORMATS = ("rich", "json", "markdown", "junit", "html")
FAIL_ON = ("error", "warning", "info", "never")
LAYOUTS = ("batch-first", "seq-first")
OPTIMIZERS = ("sgd", "adam")
SEED_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalyzeConfig:
    target: TargetRef
    inputs: tuple[InputSpec, ...] = ()
    batches: int = 3
    batch_size: int | None = None
    """Batch size of inferred inputs (None: the tool's default for the input kind)."""
    device: str = "auto"
    dtype: str = "float32"
    loss: str = "auto"
    steps: int = 0
    lr: float = 0.01
    optimizer: str = "sgd"
    seed: int = 0
    format: str | None = None
    """None: rich on a terminal, else plain text."""
    output: Path | None = None
    fail_on: str = "error"
    arch_opts: Mapping[str, Any] = field(default_factory=dict)
    init_args: Mapping[str, Any] = field(default_factory=dict)
    target_arg: str | None = None
    layout: str | None = None
    thresholds: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    try_fixes: bool = False
    baseline: Path | None = None
    debug: bool = False
    severity: Mapping[str, str] = field(default_factory=dict)
    """Per finding id: error, warning, info or off (config `rules:`)."""
    ignore: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(finding id, layer globs) pairs to drop (config `ignore:`); no globs drops the whole finding."""
    baseline_orders: float = 1.0
    """A layer regresses when its gradient ratio falls by more than this many orders of magnitude."""
    reports: tuple[tuple[str, Path], ...] = ()
    """Extra (format, file) reports written by the same run (config `reports:`)."""
    timeout: float | None = None
    """Seconds a target's analysis may take before its worker is stopped (exit 2)."""


# Keys a config file may set, mapped to the AnalyzeConfig field they fill.
FILE_KEYS = {
    "target": "target",
    "input": "inputs",
    "inputs": "inputs",
    "batches": "batches",
    "batch-size": "batch_size",
    "device": "device",
    "dtype": "dtype",
    "loss": "loss",
    "steps": "steps",
    "lr": "lr",
    "optimizer": "optimizer",
    "seed": "seed",
    "format": "format",
    "output": "output",
    "fail-on": "fail_on",
    "arch-opt": "arch_opts",
    "init": "init_args",
    "model": "init_args",
    "target-arg": "target_arg",
    "layout": "layout",
    "thresholds": "thresholds",
    "try-fixes": "try_fixes",
    "fixes": "try_fixes",
    "baseline": "baseline",
    "timeout": "timeout",
}


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str | None:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f"did you mean {close[0]!r}?" if close else None


def parse_key_values(items: list[str] | tuple[str, ...], option: str) -> dict[str, Any]:
    """Parse KEY=VALUE pairs; values are read as YAML (3 -> int, true -> bool, [1,2] -> list)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ConfigError(
                f"cannot read {option} {item!r}", f"write it as KEY=VALUE, e.g. {option} depth=50"
            )
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"cannot read the value in {option} {item!r}: {exc}") from None
    return out


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a gradcheck YAML file (or pyproject's [tool.gradcheck]) into a plain dict."""
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    if path.name == "pyproject.toml":
        return _read_pyproject(path)
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of options at the top level")
    return data


def _read_pyproject(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        return {}
    data = tomllib.loads(path.read_text())
    section = data.get("tool", {}).get("gradcheck", {})
    return section if isinstance(section, dict) else {}


def find_default_config(cwd: Path) -> Path | None:
    """gradcheck.yaml in the working directory, else a pyproject.toml with [tool.gradcheck]."""
    for name in ("gradcheck.yaml", "gradcheck.yml"):
        if (cwd / name).is_file():
            return cwd / name
    pyproject = cwd / "pyproject.toml"
    if pyproject.is_file() and _has_gradcheck_section(pyproject):
        return pyproject
    return None


def _has_gradcheck_section(pyproject: Path) -> bool:
    """Whether pyproject.toml configures gradcheck. A broken pyproject.toml that does not mention
    [tool.gradcheck] is another tool's business: it must not stop `gradcheck analyze`. One that
    does is an error naming the file and line, since its settings cannot be read."""
    try:
        return bool(_read_pyproject(pyproject))
    except (ValueError, OSError) as exc:  # TOMLDecodeError and UnicodeDecodeError are ValueErrors
        raw = pyproject.read_bytes()
        if b"tool.gradcheck" not in raw:
            return False
        if isinstance(exc, UnicodeDecodeError):
            line = raw[: exc.start].count(b"\n") + 1
            message = f"{pyproject}:{line}: not UTF-8 text"
        else:  # tomllib's message ends with "(at line L, column C)"
            message = f"{pyproject}: not valid TOML: {exc}"
        raise ConfigError(message, "fix the file, or pass --config FILE") from None


def values_from_file(data: Mapping[str, Any], source: Path) -> dict[str, Any]:
    """Translate a config file's keys into AnalyzeConfig field values."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("_", "-")
        if name not in FILE_KEYS:
            hint = did_you_mean(name, tuple(FILE_KEYS))
            raise ConfigError(f"{source}: unknown key {key!r}", hint)
        out[FILE_KEYS[name]] = _normalize(FILE_KEYS[name], value, source)
    return out


def _normalize(field_name: str, value: Any, source: Path) -> Any:
    if field_name == "target":
        return parse_target(str(value))
    if field_name == "inputs":
        items = value if isinstance(value, list) else [value]
        return tuple(parse_input(str(v)) for v in items)
    if field_name in ("output", "baseline") and value is not None:
        return Path(str(value))
    if field_name in ("arch_opts", "init_args", "thresholds"):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {field_name.replace('_', '-')} must be a mapping")
        return dict(value)
    return value


def build_config(
    target: str | None, flags: Mapping[str, Any], file_values: Mapping[str, Any]
) -> AnalyzeConfig:
    """Merge defaults < file < flags (flags given as None were not on the command line)."""
    values: dict[str, Any] = dict(file_values)
    for key, value in flags.items():
        if value is None:
            continue
        if key in ("arch_opts", "init_args") and key in values:
            value = {**values[key], **value}
        values[key] = value
    if target is not None:
        values["target"] = parse_target(target)
    if "target" not in values:
        raise ConfigError(
            "no TARGET given",
            "e.g. `gradcheck analyze model.py` or builtin:sigmoid-mlp, or put `target:` in gradcheck.yaml",
        )
    known = {f.name for f in fields(AnalyzeConfig)}
    config = AnalyzeConfig(**{k: v for k, v in values.items() if k in known})
    return validate(config)


def validate(config: AnalyzeConfig) -> AnalyzeConfig:
    _check_choice("--dtype", config.dtype, DTYPES)
    _check_choice("--loss", config.loss, LOSSES)
    _check_choice("--fail-on", config.fail_on, FAIL_ON)
    _check_choice("--optimizer", config.optimizer, OPTIMIZERS)
    if config.format is not None:
        _check_choice("--format", config.format, FORMATS)
    if config.layout is not None:
        _check_choice("--layout", config.layout, LAYOUTS)
    for name, value, low in (("--batches", config.batches, 1), ("--steps", config.steps, 0)):
        if not isinstance(value, int) or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    _check_positive("--baseline-orders", config.baseline_orders)
    _check_positive("--lr", config.lr)
    if config.timeout is not None:
        _check_positive("--timeout", config.timeout)
    if not _is_int(config.seed) or not 0 <= config.seed <= SEED_MAX:
        raise ConfigError(
            f"--seed must be an integer from 0 to {SEED_MAX} (2^63-1), got {config.seed!r}",
            "any seed in that range gives a reproducible run, e.g. --seed 0",
        )
    if not isinstance(config.try_fixes, bool):
        raise ConfigError(f"try-fixes (fixes:) must be true or false, got {config.try_fixes!r}")
    if config.batch_size is not None and (not isinstance(config.batch_size, int) or config.batch_size < 1):
        raise ConfigError(f"--batch-size must be a positive integer, got {config.batch_size!r}")
    return replace(config, device=str(config.device))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_positive(option: str, value: object) -> None:
    """A positive, finite number (NaN, infinity, 0 and negatives read as a mistake, not a finding)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ConfigError(
            f"{option} must be a positive finite number, got {value!r}",
            "NaN, infinity, zero and negative values are refused",
        )


def _check_choice(option: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        hint = did_you_mean(str(value), choices)
        raise ConfigError(f"{option} must be one of {', '.join(choices)}; got {value!r}", hint)
