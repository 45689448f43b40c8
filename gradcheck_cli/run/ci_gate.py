"""The CI gate around the pipeline: write one report per output, annotate, summarise, and combine
the exit codes. The pipeline owns the order of the stages; `supervisor` runs every target.

Torch-free.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from gradcheck_cli.config.analyze_config import AnalyzeConfig
from gradcheck_cli.records.outcome import TargetFailure
from gradcheck_cli.records.report import Report, exit_code
from gradcheck_cli.records.text import count


def combined_exit_code(results: Sequence[tuple[AnalyzeConfig, Report]]) -> int:
    return max((exit_code(report, config.fail_on) for config, report in results), default=0)


def output_groups(
    results: Sequence[tuple[AnalyzeConfig, Report]],
) -> dict[tuple[str, Path | None], list[tuple[AnalyzeConfig, Report]]]:
    """Reports that share a format and an output file go into one document."""
    groups: dict[tuple[str, Path | None], list[tuple[AnalyzeConfig, Report]]] = {}
    for config, report in results:
        for key in ((config.format or "rich", config.output), *config.reports):
            groups.setdefault(key, []).append((config, report))
    return groups


def emit_annotations(reports: Sequence[Report], environ: Mapping[str, str] = os.environ) -> None:
    from gradcheck_cli.render.annotations import github_annotations, in_github_actions

    if not in_github_actions(environ):
        return
    for report in reports:
        for line in github_annotations(report, Path.cwd()):
            print(line, file=sys.stderr)


def append_step_summary(
    reports: Sequence[Report], failures: Sequence[TargetFailure] = (), environ: Mapping[str, str] = os.environ
) -> None:
    """GitHub shows $GITHUB_STEP_SUMMARY (Markdown, appended to by each step) on the run's page."""
    path = environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    from gradcheck_cli.render import render_reports

    with open(path, "a", encoding="utf-8") as summary:
        summary.write(render_reports("markdown", list(reports), failures=failures) + "\n")


def verdict_line(report: Report, output: Path | None, name_target: bool = False) -> str:
    s = report.summary
    ids = list(dict.fromkeys(f.id for f in report.findings))
    return (
        f"gradcheck{' ' + report.target if name_target else ''}: {s.status} ({count(s.errors, 'error')}, {count(s.warnings, 'warning')}"
        + (f", {s.ignored} ignored" if s.ignored else "")
        + ")"
        + (f": {', '.join(ids)}" if ids else "")
        + (f"; report written to {output}" if output else "")
    )
