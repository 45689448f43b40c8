"""AnalyzeConfig and how it is assembled: defaults < config file < command-line flags.

Each option's flags, file keys, normalisers and checks are declared once, in `options.OPTIONS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from gradcheck_cli.config.options import (
    DTYPES,
    FAIL_ON,
    FORMATS,
    LAYOUTS,
    LOSSES,
    OPTIMIZERS,
    check_values,
    merge,
    parse_key_values,
    values_from_file,
)
from gradcheck_cli.config.scale_settings import ScaleSettings
from gradcheck_cli.config.specs import InputSpec, TargetRef, parse_target
from gradcheck_cli.records.errors import ConfigError
from gradcheck_cli.records.hints import did_you_mean

__all__ = [
    "DTYPES",
    "FAIL_ON",
    "FORMATS",
    "LAYOUTS",
    "LOSSES",
    "OPTIMIZERS",
    "AnalyzeConfig",
    "build_config",
    "did_you_mean",
    "parse_key_values",
    "validate",
    "values_from_file",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalyzeConfig:
    target: TargetRef
    inputs: tuple[InputSpec, ...] = ()
    batches: int = 3
    batch_size: int | None = None
    """Batch size of inferred inputs (None: the tool's default for the input kind)."""
    device: str = "auto"
    dtype: str = "float32"
    dtype_given: bool = True
    """False when neither --dtype nor a config file set `dtype`: with --weights, the checkpoint's
    trained precision is used instead of the default (load/trained_precision.py)."""
    dtype_reason: str | None = None
    """Why the analysis runs in `dtype`, when a checkpoint decided it."""
    loss: str = "auto"
    steps: int = 0
    lr: float | None = None
    """None: 0.01 for --optimizer, else the rate of the user's own optimizer (configure_optimizers)."""
    optimizer: str = "sgd"
    seed: int = 0
    format: str | None = None
    """None: rich on a terminal, else plain text."""
    output: Path | None = None
    fail_on: str = "error"
    arch_opts: Mapping[str, Any] = field(default_factory=dict)
    init_args: Mapping[str, Any] = field(default_factory=dict)
    target_arg: str | None = None
    labels: InputSpec | None = None
    """--labels SPEC: integer labels (or float targets) generated beside the inputs, e.g. int:16:10."""
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
    weights: Path | None = None
    """A trained checkpoint loaded into the model before anything is measured."""
    weights_partial: bool = False
    """Accept a checkpoint that fits only in part (the rest stays at init)."""
    versus: str | None = None
    """'init' or a second checkpoint: measured with the same batches and shown side by side."""
    clip: float | None = None
    """--steps: clip the total gradient norm at this value (clip_grad_norm_) before each step."""
    lr_headroom: bool = False
    """Measure the learning-rate headroom (measure/lr_headroom.py) before anything else is trained."""
    headroom_steps: int = 30
    headroom_multipliers: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0)
    """The learning-rate multipliers --lr-headroom tries; the smallest is the reference run."""
    select: tuple[str, ...] = ()
    """Only these finding ids are reported (--select); empty: all."""
    columns: tuple[str, ...] = ()
    """Extra columns of the terminal table (--columns)."""
    name: str | None = None
    """A configured target's `name:` (for --target NAME)."""
    timeout: float | None = None
    precision: tuple[str, ...] = ()
    """--precision: the number formats (bf16, fp16, fp8-e4m3, fp8-e5m2) to measure each layer's headroom in."""
    """Seconds a target's analysis may take before its worker is stopped (exit 2)."""
    scale: ScaleSettings | None = None
    """`gradcheck scale`: the width sweep the worker runs instead of an analysis."""


def build_config(
    target: str | None, flags: Mapping[str, Any], file_values: Mapping[str, Any]
) -> AnalyzeConfig:
    """Merge defaults < file < flags (flags given as None were not on the command line)."""
    values = merge(file_values, {k: v for k, v in flags.items() if v is not None})
    if target is not None:
        values["target"] = parse_target(target)
    if "target" not in values:
        raise ConfigError(
            "no TARGET given",
            "e.g. `gradcheck analyze model.py` or builtin:sigmoid-mlp, or put `target:` in gradcheck.yaml",
        )
    values.setdefault("dtype_given", "dtype" in values)
    known = {f.name for f in fields(AnalyzeConfig)}
    config = AnalyzeConfig(**{k: v for k, v in values.items() if k in known})
    return validate(config)


def validate(config: AnalyzeConfig) -> AnalyzeConfig:
    check_values(config)
    return replace(config, device=str(config.device))
