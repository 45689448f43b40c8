"""The analyze command's work after parsing: the configs read and checked, every target run by
the supervisor, the reports written where each --output and --format says, and the exit code."""

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import typer

from gradcheck_cli.records.errors import GradcheckError
from gradcheck_cli.run.boundary import doing, print_error


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def color_allowed() -> bool:
    return stdout_is_terminal() and not os.environ.get("NO_COLOR")


def show_config_text(
    target: str | None, params: dict[str, Any], config_path: Path | None, only: str | None
) -> str:
    from gradcheck_cli.config.options import values_from_flags
    from gradcheck_cli.config.showconfig import show_config

    flags = values_from_flags(params)
    return show_config(target, flags, config_path, Path.cwd(), only)


def run_analyze(
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
    from gradcheck_cli.config.options import values_from_flags
    from gradcheck_cli.run.preflight import check_configs

    configs = load_configs(
        target, values_from_flags({**flags, "debug": debug}), config_path, Path.cwd(), only
    )
    check_configs(configs)
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

    to_terminal = output is None and color_allowed()
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
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
    except OSError as exc:
        raise GradcheckError(
            f"cannot write the report to {output}: {exc.strerror or exc}",
            "name a file in a folder you can write to with --output",
        ) from exc
