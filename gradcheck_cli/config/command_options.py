"""The options of every command but `analyze`, declared once, as `analyze`'s are in options.py.

Each command's arguments and options are rows of `COMMAND_OPTIONS`: run/cli.py builds the
command's signature from them (typer reads it), checks the `choices`, and `docs/options.md`
lists them (`python scripts/gen_options.py`). Torch-free and light: cli.py imports it for --help.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradcheck_cli.config.options import BY_FIELD
from gradcheck_cli.config.scale_settings import PARAMETRIZATIONS
from gradcheck_cli.records.findings import FailOn
from gradcheck_cli.records.formats import RUN_FORMATS, SCALE_FORMATS, choices


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandOption:
    name: str
    """The parameter's name in the command function."""
    flags: tuple[str, ...] = ()
    """--flag and its short form; none: a positional argument."""
    type: Any = str
    default: Any = None
    required: bool = False
    """A positional argument that must be given (no default)."""
    help: str
    metavar: str | None = None
    show_default: bool = False
    choices: tuple[str, ...] = ()
    """The values it takes (checked by the CLI: exit 2 naming the flag); empty: any."""


DEBUG = CommandOption(
    name="debug",
    flags=("--debug",),
    type=bool,
    default=False,
    help="Show tracebacks (the exit code stays 2).",
)


def analyze_option(field: str) -> CommandOption:
    """An option `analyze` declares (config/options.py), taken as it is: same flags and help."""
    option = BY_FIELD[field]
    return CommandOption(
        name=field, flags=option.flags, type=option.cli_type | None, help=option.help, metavar=option.metavar
    )


SCALE_OPTIONS: tuple[CommandOption, ...] = (
    CommandOption(
        name="target",
        type=str,
        required=True,
        metavar="TARGET",
        help="The model to build at each width: model.py, model.py:NAME, 'model.py:make(depth=4)', "
        "pkg.module:NAME or builtin:NAME; --width's KEY is passed to it as a keyword argument.",
    ),
    CommandOption(
        name="width",
        flags=("--width", "-w"),
        required=True,
        metavar="KEY=SIZES",
        help="The constructor keyword (a builtin's --arch-opt) that sets the width, and the widths: "
        "width=64,128,256,512.",
    ),
    CommandOption(
        name="parametrization",
        flags=("--parametrization", "-p"),
        metavar="NAME",
        default="standard",
        show_default=True,
        choices=PARAMETRIZATIONS,
        help="What the model declares to be, and so what each module's exponents should be "
        "(docs/scaling.md): standard (fan-in init, one lr) or mup (readout multiplier 1/width, "
        "hidden Adam lr 1/fan_in).",
    ),
    CommandOption(
        name="seeds",
        flags=("--seeds",),
        type=int,
        default=3,
        show_default=True,
        metavar="N",
        help="Inits per width (seed, seed+1, ...): the exponents' spread.",
    ),
    CommandOption(
        name="steps",
        flags=("--steps",),
        type=int,
        default=3,
        show_default=True,
        metavar="T",
        help="Forward passes t = 1..T on the fixed batch, an optimizer step between each (2 to 20).",
    ),
    CommandOption(
        name="optimizer",
        flags=("--optimizer",),
        metavar="NAME",
        default="adam",
        show_default=True,
        choices=("sgd", "adam"),
        help="When the model file defines no configure_optimizers() or build_optimizer().",
    ),
    *(
        analyze_option(field)
        for field in ("lr", "inputs", "labels", "init_args", "arch_opts", "loss", "device")
    ),
    CommandOption(
        name="seed",
        flags=("--seed",),
        type=int,
        default=0,
        show_default=True,
        metavar="N",
        help="The batch's seed, and the first init's.",
    ),  # fmt: skip
    CommandOption(
        name="format",
        flags=("--format", "-f"),
        default="rich",
        show_default=True,
        choices=choices(SCALE_FORMATS),
        metavar="FORMAT",
        help="rich (a table), markdown, html (log-log charts) or json (gradcheck.scale/1).",
    ),
    CommandOption(name="output", flags=("--output", "-o"), type=Path | None, help="Write the report there."),
    CommandOption(
        name="fail_on",
        flags=("--fail-on",),
        default="error",
        show_default=True,
        choices=FailOn.choices(),
        help="error, warning, info or never: the exit-1 threshold.",
    ),
    analyze_option("timeout"),
    DEBUG,
)

COMMAND_OPTIONS: dict[str, tuple[CommandOption, ...]] = {
    "compare": (
        CommandOption(
            name="old",
            type=Path,
            required=True,
            metavar="OLD",
            help="The baseline JSON report (--format json).",
        ),
        CommandOption(name="new", type=Path, required=True, metavar="NEW", help="The new JSON report."),
        CommandOption(
            name="orders",
            flags=("--orders",),
            type=float,
            default=1.0,
            metavar="ORDERS",
            show_default=True,
            help="Orders of magnitude a layer's gradient ratio may fall.",
        ),
        CommandOption(
            name="target",
            flags=("--target",),
            type=str | None,
            metavar="TARGET",
            help="Compare only this target of multi-target reports (default: every target in both).",
        ),
        DEBUG,
    ),
    "report": (
        CommandOption(
            name="path",
            type=Path,
            required=True,
            metavar="RUN.jsonl",
            help="A monitor's JSON-lines file (jsonl=).",
        ),
        CommandOption(
            name="format",
            flags=("--format", "-f"),
            default="rich",
            show_default=True,
            choices=choices(RUN_FORMATS),
            help="rich (sparklines), markdown, html (small multiples) or json.",
        ),
        CommandOption(
            name="output", flags=("--output", "-o"), type=Path | None, help="Write the report there."
        ),
        CommandOption(
            name="fail_on",
            flags=("--fail-on",),
            default="error",
            show_default=True,
            choices=FailOn.choices(),
            help="error, warning, info or never: the exit-1 threshold.",
        ),
    ),
    "zoo": (
        CommandOption(
            name="options",
            flags=("--options",),
            type=bool,
            default=False,
            help="Also list each builtin's --arch-opt options and defaults.",
        ),
        DEBUG,
    ),
    "explain": (
        CommandOption(
            name="rule_id",
            type=str | None,
            metavar="ID",
            help="A finding id, e.g. vanishing-gradients (none: list them).",
        ),
        DEBUG,
    ),
    "init": (
        CommandOption(
            name="path",
            type=Path,
            default=Path("gradcheck.yaml"),
            show_default=True,
            help="Where to write the template.",
        ),
        CommandOption(
            name="force", flags=("--force",), type=bool, default=False, help="Overwrite an existing file."
        ),
        DEBUG,
    ),
    "scale": SCALE_OPTIONS,
}


def commands_markdown() -> str:
    """The other commands' options for docs/options.md: command, argument or flag, help."""
    rows = ["| command | argument or flag | what it does |", "| --- | --- | --- |"]
    for command, options in COMMAND_OPTIONS.items():
        for option in options:
            name = ", ".join(f"`{f}`" for f in option.flags) or f"`{option.metavar or option.name.upper()}`"
            rows.append(f"| `{command}` | {name} | {option.help.replace('|', chr(92) + '|')} |")
    return "\n".join(rows) + "\n"
