"""Every option of `gradcheck analyze`, declared once.

Each `Option` gives the command-line flags, the config-file keys, the type a file value must
have, the normalisers from flag and file values to the AnalyzeConfig field, the final check,
and the help text. From this table come the CLI signature (cli.py), config-file reading and
checking (config.py, configfile.py), the `init` template and the option list in the docs.
The default is the AnalyzeConfig field's default (one default, read here for help and docs).

Torch-free and light: cli.py imports it to build `--help`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradcheck_cli.records.errors import ConfigError
from gradcheck_cli.records.findings import FailOn
from gradcheck_cli.records.formats import choices as format_choices
from gradcheck_cli.records.hints import did_you_mean
from gradcheck_cli.records.precision import FORMAT_NAMES

DTYPES = ("float32", "float64", "bfloat16", "float16")
LOSSES = ("auto", "ce", "mse", "sum", "output")
FORMATS = format_choices()
FAIL_ON = FailOn.choices()
LAYOUTS = ("batch-first", "seq-first")
OPTIMIZERS = ("sgd", "adam")
SEVERITY_CHOICES = ("error", "warning", "info", "off")
COLUMNS = ("order", "params", "output")
"""Extra columns of the terminal table (--columns): forward order, parameter count, output size."""

FileCheck = tuple[str, Callable[[Any], bool]]
"""What a config-file value must be (for the message) and the test it must pass."""


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_str_or_list(v: Any) -> bool:
    return isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))


def one_of(choices: tuple[str, ...]) -> FileCheck:
    return f"one of {', '.join(choices)}", lambda v: v in choices


STR: FileCheck = ("a string", lambda v: isinstance(v, str))
INT: FileCheck = ("an integer", is_int)
NUMBER: FileCheck = ("a number", is_number)
BOOL: FileCheck = ("true or false", lambda v: isinstance(v, bool))
MAPPING: FileCheck = ("a mapping (key: value)", lambda v: isinstance(v, dict))
STR_OR_LIST: FileCheck = ("a string or a list of strings", is_str_or_list)


# --- normalisers and final checks ----------------------------------------------------------------


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


def _inputs(value: Any) -> tuple[Any, ...]:
    from gradcheck_cli.config.specs import parse_input

    items = value if isinstance(value, (list, tuple)) else [value]
    return tuple(parse_input(str(v)) for v in items)


def _labels(value: Any) -> Any:
    from gradcheck_cli.config.specs import parse_labels

    return parse_labels(str(value))


def _target(value: Any) -> Any:
    from gradcheck_cli.config.specs import parse_target

    return parse_target(str(value))


def _path(value: Any) -> Path | None:
    return None if value is None else Path(str(value))


def _key_values(option: str) -> Callable[[Any], dict[str, Any]]:
    return lambda items: parse_key_values(items, option)


def _choice(option: str, choices: tuple[str, ...]) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if value is not None and value not in choices:
            hint = did_you_mean(str(value), choices)
            raise ConfigError(f"{option} must be one of {', '.join(choices)}; got {value!r}", hint)

    return check


def _positive_number(option: str) -> Callable[[Any], None]:
    """A positive, finite number: NaN, infinity, zero and negatives are argument errors, not findings."""

    def check(value: Any) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise ConfigError(
                f"{option} must be a positive finite number, got {value!r}",
                "NaN, infinity, zero and negative values are refused",
            )

    return check


MAX_BATCHES = 1000
"""--batches: more sample batches than any gradient statistic needs (3 is the default)."""
MAX_STEPS = 10_000
"""--steps: training steps before the measurement (a diagnosis, not a training run)."""
MAX_BATCH_SIZE = 1 << 20
"""--batch-size of inferred inputs."""


def _int_range(option: str, low: int, high: int) -> Callable[[Any], None]:
    """An integer from `low` to `high`: checked before the work, the message names the bound."""

    def check(value: Any) -> None:
        if value is None:
            return
        if not is_int(value) or not low <= value <= high:
            raise ConfigError(
                f"{option} must be an integer from {low} to {high}, got {value!r}",
                f"{high} is the documented upper bound (docs/options.md)"
                if is_int(value) and value > high
                else None,
            )

    return check


SEED_MAX = 2**63 - 1
"""torch.manual_seed takes more, but gradcheck derives further seeds from this one."""


def _seed(value: Any) -> None:
    if not is_int(value) or not 0 <= value <= SEED_MAX:
        raise ConfigError(
            f"--seed must be an integer from 0 to {SEED_MAX} (2^63-1), got {value!r}",
            "any seed in that range gives a reproducible run, e.g. --seed 0",
        )


def _optional_positive(option: str) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if value is not None and (
            not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0
        ):
            raise ConfigError(f"{option} must be a positive number, got {value!r}")

    return check


def _versus(value: Any) -> None:
    if value is not None and value != "init" and not Path(str(value)).exists():
        raise ConfigError(
            f"--versus {value}: no such file or folder", "use --versus init or a checkpoint path"
        )


def _true_or_false(value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"try-fixes (fixes:) must be true or false, got {value!r}")


def _keep(value: Any) -> Any:
    return value


def _id_list(value: Any) -> tuple[str, ...]:
    """`a,b`, `["a", "b"]` or repeated flags -> ("a", "b")."""
    items = [value] if isinstance(value, str) else list(value or ())
    return tuple(part.strip() for item in items for part in str(item).split(",") if part.strip())


def _known_ids(option: str) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        from gradcheck_cli.judge.rules import all_rules

        ids = [r.id for r in all_rules()]
        ids += [alias for r in all_rules() for alias in r.aliases]
        names = list(value) if isinstance(value, (list, tuple)) else []
        for name in names:
            rule_id = name[0] if isinstance(name, tuple) else name
            if rule_id not in ids:
                hint = did_you_mean(str(rule_id), ids) or "`gradcheck explain` lists the finding ids"
                raise ConfigError(f"{option}: unknown finding id {rule_id!r}", hint)

    return check


def _ignore_flag(value: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple((rule_id, ()) for rule_id in _id_list(value))


def _severities(value: Mapping[str, Any]) -> dict[str, str]:
    """`rules:` values; YAML reads an unquoted `off` as false, so false means off too."""
    return {str(k): "off" if v is False else str(v) for k, v in value.items()}


def _columns(value: Any) -> tuple[str, ...]:
    return _id_list(value)


def _column_check(value: Any) -> None:
    for name in value or ():
        if name not in COLUMNS:
            hint = did_you_mean(str(name), COLUMNS) or f"choose from {', '.join(COLUMNS)}"
            raise ConfigError(f"--columns: unknown column {name!r}", hint)


def _number_formats(value: Any) -> tuple[str, ...]:
    """`bf16,fp16` or a list; `all` is every format; each once, in the order given."""
    names = _id_list(value)
    return tuple(dict.fromkeys(n for name in names for n in (FORMAT_NAMES if name == "all" else (name,))))


def _format_check(value: Any) -> None:
    for name in value or ():
        if name not in FORMAT_NAMES:
            hint = did_you_mean(str(name), FORMAT_NAMES) or f"choose from {', '.join(FORMAT_NAMES)} or all"
            raise ConfigError(f"--precision: unknown number format {name!r}", hint)


def _threshold_flags(items: Any) -> dict[str, dict[str, float]]:
    """`ID.NAME=VALUE`, repeatable -> {ID: {NAME: VALUE}} (ids and names are checked by the rules)."""
    out: dict[str, dict[str, float]] = {}
    for item in items:
        key, sep, text = str(item).partition("=")
        rule_id, dot, name = key.strip().rpartition(".")
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (sep and dot and rule_id and name) or math.isnan(value):
            raise ConfigError(
                f"cannot read --threshold {item!r}",
                "write it as ID.NAME=VALUE, e.g. --threshold vanishing-gradients.orders=4",
            )
        out.setdefault(rule_id, {})[name] = value
    return out


def _multipliers(value: Any) -> tuple[float, ...]:
    """`1,3,10,30`, `[1, 3, 10, 30]` or repeated flags -> (1.0, 3.0, 10.0, 30.0), sorted."""
    items = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for part in (p.strip() for item in items for p in str(item).split(",")):
        try:
            number = float(part)
        except ValueError:
            number = math.nan
        if not 0 < number < math.inf:
            raise ConfigError(
                f"--headroom-multipliers: {part!r} is not a positive finite number",
                "write them as 1,3,10,30 (the first is the reference run)",
            )
        out.append(number)
    return tuple(sorted(set(out)))


def _multipliers_check(value: Any) -> None:
    if value is not None and not 2 <= len(value) <= 8:
        raise ConfigError(
            f"--headroom-multipliers needs 2 to 8 distinct multipliers, got {len(value)}",
            "e.g. --headroom-multipliers 1,3,10,30 (the smallest is the reference run)",
        )


# --- the table -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Option:
    field: str
    """The AnalyzeConfig field this option fills (also the CLI parameter name)."""
    flags: tuple[str, ...] = ()
    """Command-line spellings, long first (empty: config file only)."""
    keys: tuple[str, ...] = ()
    """Config-file keys, canonical first (empty: command line only)."""
    cli_type: Any = str
    """The type typer parses the flag as (list[str] for a repeatable flag)."""
    file_check: FileCheck | None = None
    from_flag: Callable[[Any], Any] = _keep
    from_file: Callable[[Any], Any] = _keep
    check: Callable[[Any], None] | None = None
    """Final check of the merged value (flags and file alike)."""
    merge: str | None = None
    """How a value combines with an outer one: "dict" (keys merged), "nested" (a mapping of mappings,
    merged two levels deep) or "concat" (lists joined)."""
    metavar: str | None = None
    help: str = ""
    template: str | None = None
    """How the `init` template shows it: a YAML line (or commented example block)."""

    @property
    def flag(self) -> str | None:
        return self.flags[0] if self.flags else None

    @property
    def key(self) -> str | None:
        return self.keys[0] if self.keys else None


OPTIONS: tuple[Option, ...] = (
    Option(
        field="target",
        keys=("target",),
        file_check=STR,
        from_file=_target,
        help="What to analyse (the TARGET argument wins): model.py, model.py:NAME, 'model.py:Net(3)', "
        "pkg.module:NAME or builtin:NAME.",
        template="# What to analyse: model.py, model.py:NAME, 'model.py:Net(3)', pkg.module:NAME or builtin:NAME.\n"
        "target: builtin:residual-mlp",
    ),
    Option(
        field="inputs",
        flags=("--input", "-i"),
        metavar="SHAPE",
        keys=("input", "inputs"),
        cli_type=list[str],
        file_check=STR_OR_LIST,
        from_flag=_inputs,
        from_file=_inputs,
        help="Input shape and kind, repeatable for several positional inputs: 32x784, "
        "8x3x32x32, int:4x64:1000 (tokens below 1000), float:16x784:0..1. "
        "Default: sample_batch() from the file, else inferred from the first layer.",
        template="# Inputs (omit to use sample_batch() from the file or infer from the first layer).\n"
        '# input: ["32x784"]',
    ),
    Option(
        field="arch_opts",
        flags=("--arch-opt", "-a"),
        metavar="KEY=VALUE",
        keys=("arch-opt",),
        cli_type=list[str],
        file_check=MAPPING,
        from_flag=_key_values("--arch-opt"),
        from_file=dict,
        merge="dict",
        help="Option of a builtin, e.g. depth=50 or activation=relu (see `gradcheck zoo --options`).",
    ),
    Option(
        field="init_args",
        flags=("--init",),
        metavar="KEY=VALUE",
        keys=("init", "model"),
        cli_type=list[str],
        file_check=MAPPING,
        from_flag=_key_values("--init"),
        from_file=dict,
        merge="dict",
        help="Constructor keyword argument KEY=VALUE (value read as YAML), repeatable.",
    ),
    Option(
        field="target_arg",
        flags=("--target-arg",),
        metavar="NAME",
        keys=("target-arg",),
        file_check=STR,
        help="Pass the generated target to forward as this keyword (models that compute their own loss).",
    ),
    Option(
        field="labels",
        flags=("--labels",),
        keys=("labels",),
        file_check=STR,
        from_flag=_labels,
        from_file=_labels,
        help="Integer labels beside float inputs, as each batch's target (or the --target-arg): "
        "int:16:10 (16 labels below 10), int:16x32:50257 (one per token), float:16 (regression targets).",
    ),
    Option(
        field="layout",
        flags=("--layout",),
        metavar="LAYOUT",
        keys=("layout",),
        file_check=one_of(LAYOUTS),
        check=_choice("--layout", LAYOUTS),
        help="batch-first or seq-first for sequence inputs (default: from the model's batch_first).",
    ),
    Option(
        field="batches",
        flags=("--batches", "-b"),
        metavar="N",
        keys=("batches",),
        cli_type=int,
        file_check=INT,
        check=_int_range("--batches", 1, MAX_BATCHES),
        help="Sample batches to aggregate over (default: 3, at most 1000).",
        template="batches: 3          # sample batches to aggregate over",
    ),
    Option(
        field="batch_size",
        flags=("--batch-size",),
        metavar="N",
        keys=("batch-size",),
        cli_type=int,
        file_check=INT,
        check=_int_range("--batch-size", 1, MAX_BATCH_SIZE),
        help="Batch size of inferred inputs (default: 16, at most 1048576).",
    ),
    Option(
        field="device",
        flags=("--device", "-d"),
        metavar="DEVICE",
        keys=("device",),
        file_check=STR,
        help="auto, cpu, cuda, cuda:N or mps (default: auto: cuda, then mps, then cpu).",
        template="device: auto        # auto, cpu, cuda, cuda:N, mps",
    ),
    Option(
        field="dtype",
        flags=("--dtype",),
        metavar="DTYPE",
        keys=("dtype",),
        file_check=one_of(DTYPES),
        check=_choice("--dtype", DTYPES),
        help="float32, float64, bfloat16 or float16 (mixed precision via autocast) (default: float32).",
        template="dtype: float32      # float32, float64, bfloat16, float16",
    ),
    Option(
        field="precision",
        flags=("--precision",),
        keys=("precision",),
        cli_type=list[str],
        file_check=STR_OR_LIST,
        from_flag=_number_formats,
        from_file=_number_formats,
        check=_format_check,
        metavar="FMT[,FMT]",
        help="Number-format headroom: for each of bf16, fp16, fp8-e4m3, fp8-e5m2 (or all), every layer's "
        "share of outputs and gradients that underflow or overflow, the loss-scale range, and a verdict "
        "(fine, needs-scaling, keep-higher-precision) confirmed by running the layer in the format.",
        template="# precision: [bf16, fp16]   # number-format headroom per layer (docs/precision.md)",
    ),
    Option(
        field="loss",
        flags=("--loss",),
        metavar="LOSS",
        keys=("loss",),
        file_check=one_of(LOSSES),
        check=_choice("--loss", LOSSES),
        help="auto, ce, mse, sum or output (the model returns its own loss) (default: auto).",
        template="loss: auto          # auto, ce, mse, sum, output",
    ),
    Option(
        field="steps",
        flags=("--steps",),
        metavar="K",
        keys=("steps",),
        cli_type=int,
        file_check=INT,
        check=_int_range("--steps", 0, MAX_STEPS),
        help="Take K optimizer steps on the sample batches first, then measure (default: 0, at most 10000).",
    ),
    Option(
        field="lr",
        flags=("--lr",),
        metavar="LR",
        keys=("lr",),
        cli_type=float,
        file_check=NUMBER,
        check=_positive_number("--lr"),
        help="Learning rate of the --steps optimizer (default: 0.01, or the rate of the model file's own "
        "configure_optimizers() or build_optimizer(), or of the --weights checkpoint's optimizer, which --lr overrides).",
    ),
    Option(
        field="optimizer",
        flags=("--optimizer",),
        metavar="NAME",
        keys=("optimizer",),
        file_check=one_of(OPTIMIZERS),
        check=_choice("--optimizer", OPTIMIZERS),
        help="sgd or adam, for --steps when the model file defines no configure_optimizers() or build_optimizer() "
        "and --weights holds no optimizer state (default: sgd).",
    ),
    Option(
        field="clip",
        flags=("--clip",),
        keys=("clip",),
        cli_type=float,
        file_check=NUMBER,
        check=_optional_positive("--clip"),
        metavar="MAX_NORM",
        help="With --steps: clip the total gradient norm at MAX_NORM before each step, as your training loop does.",
        template="# clip: 1.0          # --steps clips the gradient norm as your loop does",
    ),
    Option(
        field="lr_headroom",
        flags=("--lr-headroom",),
        keys=("lr-headroom",),
        cli_type=bool,
        file_check=BOOL,
        help="Measure how far the learning rate can go up: k steps on one batch at the rate times each "
        "--headroom-multipliers, from the same start; reports the smallest multiplier at which the loss "
        "diverges or stalls or an instrument (update ratio, attention logit, output logits) grows "
        "super-linearly (docs/lr-headroom.md).",
        template="# lr-headroom: true   # how far the learning rate can go up before training breaks",
    ),
    Option(
        field="headroom_steps",
        flags=("--headroom-steps",),
        metavar="K",
        keys=("headroom-steps",),
        cli_type=int,
        file_check=INT,
        check=_int_range("--headroom-steps", 2, 200),
        help="With --lr-headroom: steps per multiplier on the fixed batch (default: 30; 20 to 50 is the useful range).",
    ),
    Option(
        field="headroom_multipliers",
        flags=("--headroom-multipliers",),
        metavar="M[,M]",
        keys=("headroom-multipliers",),
        file_check=("a list of numbers or a comma-separated string", lambda v: isinstance(v, (str, list))),
        from_flag=_multipliers,
        from_file=_multipliers,
        check=_multipliers_check,
        help="With --lr-headroom: the learning-rate multipliers tried, the smallest being the reference "
        "(default: 1,3,10,30).",
    ),
    Option(
        field="seed",
        flags=("--seed",),
        metavar="N",
        keys=("seed",),
        cli_type=int,
        file_check=INT,
        check=_seed,
        help="Seed for inputs and initialisation, 0 to 2^63-1 (default: 0).",
        template="seed: 0             # deterministic inputs and initialisation",
    ),
    Option(
        field="config",
        flags=("--config", "-c"),
        metavar="FILE",
        cli_type=Path,
        help="A YAML file of these options; flags win. Default: ./gradcheck.yaml, then \\[tool.gradcheck] "
        "in pyproject.toml.",
    ),
    Option(
        field="format",
        flags=("--format", "-f"),
        metavar="FORMAT",
        keys=("format",),
        file_check=one_of(FORMATS),
        check=_choice("--format", FORMATS),
        help="rich, json, markdown, junit or html (default: rich).",
    ),
    Option(
        field="output",
        flags=("--output", "-o"),
        metavar="FILE",
        keys=("output",),
        cli_type=Path,
        file_check=STR,
        from_file=_path,
        help="Write the report to this file; the terminal still gets the verdict.",
    ),
    Option(
        field="fail_on",
        flags=("--fail-on",),
        metavar="LEVEL",
        keys=("fail-on",),
        file_check=one_of(FAIL_ON),
        check=_choice("--fail-on", FAIL_ON),
        help="Exit 1 on findings at or above: error, warning, info or never (default: error).",
        template="fail-on: error      # error, warning, info, never: the CI gate",
    ),
    Option(
        field="try_fixes",
        flags=("--try-fixes",),
        keys=("try-fixes", "fixes"),
        cli_type=bool,
        file_check=BOOL,
        check=_true_or_false,
        help="Apply each suggested fix to a copy of the model and measure again.",
    ),
    Option(
        field="reports",
        keys=("reports",),
        file_check=("a list of {format, output} entries", lambda v: isinstance(v, list)),
        from_file=lambda entries: tuple((str(e["format"]), Path(str(e["output"]))) for e in entries),
        help="Extra reports written by the same run: a list of {format, output}.",
        template="# Extra reports written by the same run (formats: rich, json, markdown, junit, html):\n"
        "# reports:\n"
        "#   - {format: markdown, output: reports/gradcheck.md}\n"
        "#   - {format: junit, output: reports/gradcheck.xml}",
    ),
    Option(
        field="severity",
        keys=("rules",),
        file_check=MAPPING,
        from_file=_severities,
        merge="dict",
        help="Per finding id: error, warning, info, or off to drop it.",
        template="# Per-rule severity (error, warning, info, or off to drop it), and findings to ignore by layer glob:\n"
        "# rules:\n"
        "#   saturated-activations: warning",
    ),
    Option(
        field="select",
        flags=("--select",),
        keys=("select",),
        cli_type=list[str],
        file_check=STR_OR_LIST,
        from_flag=_id_list,
        from_file=_id_list,
        check=_known_ids("--select"),
        metavar="ID[,ID]",
        help="Report only these finding ids (the others are listed as ignored).",
    ),
    Option(
        field="ignore",
        flags=("--ignore",),
        keys=("ignore",),
        cli_type=list[str],
        file_check=("a list of finding ids or {id, layers} entries", lambda v: isinstance(v, list)),
        from_flag=_ignore_flag,
        from_file=lambda entries: tuple(_ignore_entry(e) for e in entries),
        check=_known_ids("--ignore"),
        merge="concat",
        metavar="ID[,ID]",
        help="Ignore these finding ids (still counted and listed as ignored). In the config file: a "
        "list of ids or {id, layers} (layer globs).",
        template='# ignore:\n#   - {id: no-gradient, layers: "teacher.*"}',
    ),
    Option(
        field="columns",
        flags=("--columns",),
        keys=("columns",),
        cli_type=list[str],
        file_check=STR_OR_LIST,
        from_flag=_columns,
        from_file=_columns,
        check=_column_check,
        metavar="COL[,COL]",
        help="Extra columns of the terminal table: order (forward order), params (parameter count), "
        "output (output size per sample).",
    ),
    Option(
        field="name",
        keys=("name",),
        file_check=STR,
        help="A name for a target in `targets:`, for `--target NAME`.",
    ),
    Option(
        field="only_target",
        flags=("--target",),
        metavar="NAME",
        help="Run only this configured target (its `name:`, its target, or its file name) with its "
        "settings and reports.",
    ),
    Option(
        field="show_config",
        flags=("--show-config",),
        cli_type=bool,
        help="Print the merged configuration, with the file and line each value came from, and exit.",
    ),
    Option(
        field="baseline",
        flags=("--baseline",),
        metavar="FILE",
        keys=("baseline",),
        cli_type=Path,
        file_check=STR,
        from_file=_path,
        help="Compare with a saved JSON report; regressions are findings.",
        template="# Fail only on regressions against a saved JSON report (--format json --output baseline.json):\n"
        "# baseline: baseline.json",
    ),
    Option(
        field="baseline_orders",
        flags=("--baseline-orders",),
        metavar="ORDERS",
        keys=("baseline-orders",),
        cli_type=float,
        file_check=NUMBER,
        from_file=float,
        check=_positive_number("--baseline-orders"),
        help="With --baseline: a layer regresses when its gradient/weight ratio falls by more "
        "than this many orders of magnitude (default: 1).",
        template="# baseline-orders: 1.0   # how many orders of magnitude a layer's gradient ratio may fall",
    ),
    Option(
        field="weights",
        flags=("--weights",),
        keys=("weights",),
        cli_type=Path,
        file_check=STR,
        from_file=_path,
        metavar="PATH",
        help="Load trained weights first: a torch.save'd state_dict or training checkpoint, a Lightning .ckpt, "
        "a .safetensors file or a Hugging Face-style folder. Never runs code from the file.",
        template="# Analyse a trained checkpoint instead of the model at init:\n# weights: runs/last.ckpt",
    ),
    Option(
        field="weights_partial",
        flags=("--weights-partial",),
        keys=("weights-partial",),
        cli_type=bool,
        file_check=BOOL,
        help="Accept a checkpoint that fits the model only in part; the rest stays at init (listed in the report).",
    ),
    Option(
        field="versus",
        flags=("--versus",),
        keys=("versus",),
        file_check=STR,
        check=_versus,
        metavar="init|PATH",
        help="Also measure the model at init (or another checkpoint) with the same batches and seed, "
        "and show both states side by side.",
        template="# versus: init       # compare the trained state with the model as built",
    ),
    Option(
        field="thresholds",
        flags=("--threshold", "-t"),
        keys=("thresholds",),
        cli_type=list[str],
        file_check=MAPPING,
        from_flag=_threshold_flags,
        from_file=dict,
        merge="nested",
        metavar="ID.NAME=VALUE",
        help="Override one threshold of a rule, repeatable: --threshold vanishing-gradients.orders=4 "
        "(`gradcheck explain ID` lists them). In the config file: `thresholds:` per finding id.",
        template="# Override a rule's thresholds (see `gradcheck explain ID`):\n"
        "# thresholds:\n"
        "#   vanishing-gradients: {orders: 3.0}",
    ),
    Option(
        field="timeout",
        flags=("--timeout",),
        keys=("timeout",),
        cli_type=float,
        file_check=NUMBER,
        check=_positive_number("--timeout"),
        metavar="SECONDS",
        help="Stop a target's analysis after this many seconds (exit 2, naming the stage it was in).",
    ),
    Option(
        field="debug",
        flags=("--debug",),
        cli_type=bool,
        help="Show tracebacks (the exit code stays 2).",
    ),
)

TOP_LEVEL_ONLY = ("targets",)
"""Config keys that are not options: `targets:` lists one option set per model."""


def _ignore_entry(entry: Any) -> tuple[str, tuple[str, ...]]:
    if not isinstance(entry, Mapping):
        return str(entry), ()
    layers = entry.get("layers", ())
    return str(entry["id"]), (layers,) if isinstance(layers, str) else tuple(layers)


BY_FIELD: dict[str, Option] = {o.field: o for o in OPTIONS}
BY_KEY: dict[str, Option] = {key: o for o in OPTIONS for key in o.keys}
"""Every config-file spelling (dashes) -> its option."""
CLI_OPTIONS: tuple[Option, ...] = tuple(o for o in OPTIONS if o.flags)


# --- using the table -----------------------------------------------------------------------------


def option_for_key(key: str, source: Path | str) -> Option:
    """The option a config-file key names (underscores read as dashes); unknown keys are an error."""
    name = str(key).replace("_", "-")
    if name not in BY_KEY:
        raise ConfigError(f"{source}: unknown key {key!r}", did_you_mean(name, tuple(BY_KEY)))
    return BY_KEY[name]


def values_from_file(data: Mapping[str, Any], source: Path | str) -> dict[str, Any]:
    """A config file's keys -> AnalyzeConfig field values, through each option's normaliser."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        option = option_for_key(str(key), source)
        out[option.field] = option.from_file(value)
    return out


def values_from_flags(params: Mapping[str, Any]) -> dict[str, Any]:
    """Command-line parameters -> AnalyzeConfig field values (None: the flag was not given)."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        option = BY_FIELD.get(name)
        out[name] = value if value is None or option is None else option.from_flag(value)
    return out


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Field values of an inner scope over an outer one: mappings merge, lists join, others replace."""
    out = dict(base)
    for name, value in override.items():
        how = BY_FIELD[name].merge if name in BY_FIELD else None
        if value is not None and name in out and out[name] is not None:
            if how == "dict":
                value = {**out[name], **value}
            elif how == "concat":
                value = (*out[name], *value)
            elif how == "nested":
                value = {**out[name], **{k: {**out[name].get(k, {}), **v} for k, v in value.items()}}
        out[name] = value
    return out


def check_values(values: Any) -> None:
    """Each option's final check on the merged value (an AnalyzeConfig or anything with the fields)."""
    for option in OPTIONS:
        if option.check is not None and hasattr(values, option.field):
            option.check(getattr(values, option.field))


def effective_options(config: Any) -> dict[str, Any]:
    """The config's values under their config-file keys, as plain YAML-ready data.

    The hook for `--show-config`: every option with a file key, in table order."""
    out: dict[str, Any] = {}
    for option in OPTIONS:
        if option.key is not None and hasattr(config, option.field):
            out[option.key] = _plain(getattr(config, option.field))
    return out


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and hasattr(value, "raw"):
        return value.raw
    if isinstance(value, Path) or dataclasses.is_dataclass(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


TEMPLATE_HEADER = """# gradcheck configuration. Command-line flags win over this file.
# Run `gradcheck analyze` in this folder to use it; an unknown key or a wrong type stops with
# exit 2, naming this file, the line and the closest valid key."""

TARGETS_TEMPLATE = """# Several models in one repository: one report each, one exit code. Each entry takes the keys
# above and inherits the ones set at the top level.
# targets:
#   - target: models/encoder.py
#   - target: models/decoder.py:Decoder
#     input: ["int:8x64:1000"]"""


def init_template() -> str:
    """The commented gradcheck.yaml that `gradcheck init` writes (templates/gradcheck.yaml).

    Set options (`key: value`) group together; a commented example that opens with its key
    (`# key: ...`) continues the block before it; any other comment opens a new block."""
    blocks = [TEMPLATE_HEADER]
    grouped = False  # is blocks[-1] a group that the next line may join?
    for option in OPTIONS:
        text = option.template
        if text is None:
            continue
        is_setting = not text.startswith("#")
        continues = is_setting and grouped or re.match(r"# [a-z-]+:", text) is not None
        if continues:
            blocks[-1] += "\n" + text
        else:
            blocks.append(text)
        grouped = is_setting
    blocks.append(TARGETS_TEMPLATE)
    return "\n\n".join(blocks) + "\n"


def options_markdown() -> str:
    """The option list of docs/options.md: flag, config key and help of every option."""
    rows = ["| flag | config key | what it does |", "| --- | --- | --- |"]
    for option in OPTIONS:
        flags = ", ".join(f"`{f}`" for f in option.flags) or "—"
        keys = ", ".join(f"`{k}`" for k in option.keys) or "—"
        text = option.help.replace("|", "\\|").replace("\\[", "[")
        rows.append(f"| {flags} | {keys} | {text} |")
    return "\n".join(rows) + "\n"
