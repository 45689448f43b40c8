"""The gradcheck command line: parse flags into an AnalyzeConfig, run, render, exit.

Torch is imported only inside `analyze`, so --help, --version, zoo, init and explain stay fast.
"""

import functools
import inspect
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from gradcheck_cli import __version__
from gradcheck_cli.config.command_options import COMMAND_OPTIONS, CommandOption
from gradcheck_cli.config.options import CLI_OPTIONS, Option
from gradcheck_cli.records.errors import GradcheckError
from gradcheck_cli.run.boundary import BoundedTyper, doing, print_error


def _plain_help_metavars() -> None:
    """typer 0.2x marks flags `<bool>` and required arguments `{ID}` in --help; show them as click
    and ruff do (a flag alone, an argument as ID), so usage lines read as commands to type."""
    from typer import core

    option = getattr(core, "TyperOption", None)
    if option is not None and hasattr(option, "display_type_rich"):
        shown = option.display_type_rich

        def display_type_rich(self: Any, ctx: Any) -> Any:
            return None if getattr(self, "is_flag", False) else shown(self, ctx)

        option.display_type_rich = display_type_rich
    argument = getattr(core, "TyperArgument", None)
    if argument is not None and hasattr(argument, "_usage_display_name"):

        def usage_name(self: Any) -> str:
            name = str(self.display_name_raw) + ("..." if self.nargs != 1 else "")
            return name if self.required else f"[{name}]"

        argument._usage_display_name = usage_name


_plain_help_metavars()

app = BoundedTyper(
    name="gradcheck",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help=(
        "Does the gradient flow through your PyTorch model? gradcheck runs real forward and "
        "backward passes, measures every layer, and tells you what to change.\n\n"
        "  gradcheck analyze model.py\n\n"
        "  gradcheck analyze builtin:sigmoid-mlp --format json"
    ),
)


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def _color_allowed() -> bool:
    return stdout_is_terminal() and not os.environ.get("NO_COLOR")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gradcheck {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool | None,
        typer.Option("--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """gradcheck: gradient-flow diagnostics for PyTorch models."""


def _signature(options: tuple[CommandOption, ...]) -> inspect.Signature:
    """The signature typer reads, from a command's rows of the option table."""
    params = []
    for option in options:
        settings: dict[str, Any] = {"help": option.help}
        if option.metavar:
            settings["metavar"] = option.metavar
        if option.type is not bool:
            settings["show_default"] = option.show_default
        info = typer.Option(*option.flags, **settings) if option.flags else typer.Argument(**settings)
        params.append(
            inspect.Parameter(
                option.name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                annotation=Annotated[option.type, info],
                default=inspect.Parameter.empty if option.required else option.default,
            )
        )
    return inspect.Signature(params)


def declared(name: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register `function` as the command `name`, its parameters from COMMAND_OPTIONS[name] (a value
    outside an option's `choices` is exit 2 naming the flag)."""
    options = COMMAND_OPTIONS[name]

    def register(function: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(function)
        def command(**params: Any) -> None:
            for option in options:
                if option.choices and params[option.name] not in option.choices:
                    raise typer.BadParameter(
                        f"{params[option.name]!r} is not one of {', '.join(option.choices)}",
                        param_hint=option.flags[0],
                    )
            function(**params)

        command.__signature__ = _signature(options)  # type: ignore[attr-defined]
        app.command(name=name)(command)
        return function

    return register


TARGET_ARGUMENT = typer.Argument(
    metavar="TARGET",
    help="model.py, model.py:NAME, 'model.py:Net(3, depth=4)', pkg.module:NAME or builtin:NAME "
    "(see `gradcheck zoo`). May come from the config file instead.",
    show_default=False,
)


def _parameter(option: Option) -> inspect.Parameter:
    """One CLI parameter from the option table (None default: "not given", so the file can set it)."""
    if option.field == "debug":
        info = typer.Option(*option.flags, help=option.help)
        return inspect.Parameter(
            "debug", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[bool, info], default=False
        )
    info = typer.Option(*option.flags, help=option.help, show_default=False, metavar=option.metavar)
    annotation = Annotated[option.cli_type | None, info]  # type: ignore[name-defined]
    return inspect.Parameter(
        option.field, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=None
    )


def analyze(**params: Any) -> None:
    """Run forward and backward passes on TARGET and report how gradients flow through it.

    Exit codes: 0 no finding at or above --fail-on, 1 findings, 2 could not run.
    """
    target, config, debug = params.pop("target"), params.pop("config"), params.pop("debug")
    only, show = params.pop("only_target"), params.pop("show_config")
    if show:
        _show_config(target, params, config, only)
        return
    raise typer.Exit(_run_analyze(target, params, config, debug, only))


# The signature typer reads is built from the option table: one parameter per option with a flag.
analyze.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [
        inspect.Parameter(
            "target",
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            annotation=Annotated[str | None, TARGET_ARGUMENT],
            default=None,
        ),
        *(_parameter(option) for option in CLI_OPTIONS),
    ]
)
app.command(name="analyze")(analyze)


def _show_config(
    target: str | None, params: dict[str, Any], config_path: Path | None, only: str | None
) -> None:
    from gradcheck_cli.config.options import values_from_flags
    from gradcheck_cli.config.showconfig import show_config

    flags = values_from_flags(params)
    sys.stdout.write(show_config(target, flags, config_path, Path.cwd(), only))


def _run_analyze(
    target: str | None, flags: dict[str, Any], config_path: Path | None, debug: bool, only: str | None
) -> int:
    from gradcheck_cli.records.outcome import TargetFailure
    from gradcheck_cli.run.ci_gate import combined_exit_code

    with doing("reading the options and the config file"):
        configs = _load_configs(target, flags, config_path, debug, only)
    outcomes = _run_targets(configs)
    failures = [o for o in outcomes if isinstance(o, TargetFailure)]
    for failure in failures:
        named = f"{failure.target}: " if len(configs) > 1 else ""
        print_error(named + failure.message, failure.hint, failure.details if debug else None)
    results = [(c, o) for c, o in zip(configs, outcomes, strict=True) if not isinstance(o, TargetFailure)]
    code = max(combined_exit_code(results), 2 if failures else 0)
    if _is_secondary_rank() or not results:  # under torchrun rank 0 prints the combined report
        return code
    with doing("writing the reports"):
        _publish(results, failures)
    return code


def _load_configs(
    target: str | None, flags: dict[str, Any], config_path: Path | None, debug: bool, only: str | None
) -> list[Any]:
    """Every option parsed and checked, and every --output checked, before any work starts."""
    from gradcheck_cli.config.configfile import load_configs
    from gradcheck_cli.config.configread import find_default_config
    from gradcheck_cli.config.options import values_from_flags
    from gradcheck_cli.run.preflight import check_configs

    configs = load_configs(
        target, values_from_flags({**flags, "debug": debug}), config_path, Path.cwd(), only
    )
    check_configs(configs, [p for p in (config_path or find_default_config(Path.cwd()),) if p])
    return configs


def _run_targets(configs: list[Any]) -> list[Any]:
    from gradcheck_cli.run.progress import progress_for
    from gradcheck_cli.run.supervisor import run_targets

    progress = progress_for([c.target.raw for c in configs])
    try:
        return run_targets(configs, progress, timeout=configs[0].timeout)
    finally:
        progress.close()


def _publish(results: list[Any], failures: list[Any]) -> None:
    from gradcheck_cli.run.ci_gate import append_step_summary, emit_annotations

    _write_reports(results, failures)
    reports = [report for _, report in results]
    emit_annotations(reports)
    if any(config.format == "markdown" or "markdown" in dict(config.reports) for config, _ in results):
        append_step_summary(reports, failures)


def _write_reports(results: list[Any], failures: list[Any]) -> None:
    from gradcheck_cli.run.ci_gate import output_groups

    several = len(results) + len(failures) > 1
    for (fmt, output), group in output_groups(results).items():
        first = group[0][0]
        _write_report(
            [report for _, report in group], fmt, output, first.fail_on, several, failures, first.columns
        )


def _is_secondary_rank() -> bool:
    """A torchrun worker other than rank 0 (torchrun sets RANK and WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) > 0


def _write_report(
    reports: list[Any],
    fmt: str,
    output: Path | None,
    fail_on: str,
    several: bool,
    failures: list[Any],
    columns: tuple[str, ...] = (),
) -> None:
    from gradcheck_cli.render import render_reports
    from gradcheck_cli.run.ci_gate import verdict_line

    to_terminal = output is None and _color_allowed()
    width = shutil.get_terminal_size((100, 24)).columns  # COLUMNS, else the terminal, else 100
    color = to_terminal and fmt == "rich"
    text = render_reports(
        fmt, reports, width=width, color=color, fail_on=fail_on, failures=failures, columns=columns
    )
    if output is not None:
        _write_file(output, text)
    else:
        sys.stdout.write(text)
    if output is not None or fmt != "rich" or several:
        for report in reports:
            typer.echo(verdict_line(report, output, name_target=several), err=True)


def _write_file(output: Path, text: str) -> None:
    from gradcheck_cli.run.preflight import check_output

    check_output(output, {})  # again at writing: the model's code ran since the first check
    from gradcheck_cli.records.files import write_report_file

    try:
        write_report_file(output, text)
    except OSError as exc:
        raise GradcheckError(
            f"cannot write the report to {output}: {exc.strerror or exc}",
            "name a file in a folder you can write to with --output",
        ) from exc


@declared("compare")
def compare(old: Path, new: Path, orders: float, target: str | None, debug: bool) -> None:
    """Compare two JSON reports layer by layer (every target of multi-target reports, or the one
    --target names). Exit 1 on regression, 0 otherwise."""
    from gradcheck_cli.judge.baseline import compare_reports
    from gradcheck_cli.render.compare import render_comparisons

    with doing(f"comparing {old} with {new}"):
        comparisons, unmatched = compare_reports(old, new, orders, target)
    sys.stdout.write(render_comparisons(comparisons, unmatched, color=_color_allowed()))
    raise typer.Exit(1 if any(c.regressed for _, c in comparisons) else 0)


def _yaml_text(value: object) -> str:
    """A default as --arch-opt reads it back (values are YAML): true/false, not True/False."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@declared("report")
def report(path: Path, format: str, output: Path | None, fail_on: str) -> None:
    """Render a training run's history (GradientMonitor jsonl=) with trend findings; exit 1 on findings."""
    from gradcheck_cli.run.report_command import report_run

    width = shutil.get_terminal_size((100, 24)).columns
    raise typer.Exit(report_run(path, format, output, fail_on, width=width, color=_color_allowed()))


@declared("zoo")
def zoo(options: bool, debug: bool) -> None:
    """List the built-in architectures, one per line: `builtin:NAME` then what it shows."""
    from gradcheck_cli.load.zoo import ARCHITECTURES, OPTION_RANGES, describe_range

    width = max(len(name) for name in ARCHITECTURES) + len("builtin:") + 2
    for name, spec in ARCHITECTURES.items():
        typer.echo(f"{'builtin:' + name:<{width}}{spec.summary}")
        if options:
            # In the CLI's own syntax, so a line can be pasted after `gradcheck analyze builtin:NAME`.
            defaults = " ".join(f"--arch-opt {k}={_yaml_text(v)}" for k, v in spec.options.items())
            typer.echo(f"{'':<{width}}{defaults}")
    if options:
        typer.echo("\nRanges: " + "; ".join(f"{key} {describe_range(key)}" for key in OPTION_RANGES))


@declared("explain")
def explain(rule_id: str | None, debug: bool) -> None:
    """Print the documentation of one finding id, or list the ids."""
    from gradcheck_cli.judge.rules import every_rule, get_rule
    from gradcheck_cli.records.hints import did_you_mean

    if rule_id is None:
        _list_rules()
        return
    spec = get_rule(rule_id)
    if spec is None:
        ids = [r.id for r in every_rule()]
        raise GradcheckError(
            f"no finding id {rule_id!r}", did_you_mean(rule_id, ids) or f"known: {', '.join(ids)}"
        )

    header = (
        f"# {spec.id}\n\nDefault severity: **{spec.severity.value}**; fixes: {', '.join(spec.fixes)}.\n\n"
    )
    _print_markdown(header + _doc_markdown(inspect.cleandoc(spec.doc)))


def _doc_markdown(doc: str) -> str:
    """A rule docstring as Markdown: its `Fixes` lines ("fix: what to do") become a list."""
    out, in_fixes = [], False
    for line in doc.splitlines():
        if line.startswith("## "):
            in_fixes = line.strip() == "## Fixes"
        elif in_fixes and line.strip() and not line.startswith(" "):
            line = "- " + line
        out.append(line)
    return "\n".join(out)


def _print_markdown(text: str) -> None:
    """Markdown through rich at the terminal's width up to 100 (80 when piped), no trailing blanks."""
    from io import StringIO

    from rich.console import Console
    from rich.markdown import Markdown

    width = min(100, shutil.get_terminal_size((80, 24)).columns)
    color = _color_allowed()
    console = Console(file=StringIO(), width=width, force_terminal=color, no_color=not color, highlight=False)
    console.print(Markdown(text))
    rendered = console.file.getvalue()  # type: ignore[attr-defined]
    sys.stdout.write("\n".join(line.rstrip() for line in rendered.splitlines()) + "\n")


def _list_rules() -> None:
    from gradcheck_cli.judge.rules import every_rule

    rules = sorted(every_rule(), key=lambda r: r.id)
    width = max(len(r.id) for r in rules) + 2
    for spec in rules:
        summary = inspect.cleandoc(spec.doc).splitlines()[0] if spec.doc else ""
        typer.echo(f"{spec.id:<{width}}{spec.severity.value:<9}{summary}")
    typer.echo(
        "\nrun `gradcheck explain ID` for what one means, its evidence, thresholds and fixes", err=True
    )


@declared("init")
def init(path: Path, force: bool, debug: bool) -> None:
    """Write a commented gradcheck.yaml template that works as written."""
    from gradcheck_cli.config.options import init_template
    from gradcheck_cli.run.preflight import check_output

    if path.is_dir():
        raise GradcheckError(f"{path} is a folder", f"name the file to write, e.g. {path / 'gradcheck.yaml'}")
    check_output(path, {}, "init")  # through symlinks: never over code, even with --force
    if path.exists() and not force:
        raise GradcheckError(f"{path} already exists", "use --force to overwrite it")
    with doing(f"writing {path}"):
        path.write_text(init_template())
    typer.echo(f"wrote {path}; run `gradcheck analyze` next to it", err=True)


@declared("scale")
def scale(**params: Any) -> None:
    """Build TARGET at several widths and check how each module's output, gradient and update
    scale with width against the declared parametrization (docs/scaling.md).

      gradcheck scale 'model.py:make' --width width=64,128,256,512 --parametrization mup

    Exit codes: 0 every exponent in its band, 1 findings at or above --fail-on, 2 could not run.
    """
    from gradcheck_cli.run.scale_command import scale_run

    width = shutil.get_terminal_size((100, 24)).columns
    raise typer.Exit(scale_run(params, width=width, color=_color_allowed()))


def main() -> None:
    app()
