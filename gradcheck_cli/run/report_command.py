"""The `gradcheck report RUN.jsonl` command: read, judge, render, exit code (cli.py stays thin)."""

from __future__ import annotations

import sys
from pathlib import Path

from gradcheck_cli.judge.run_verdict import build_run_report, run_exit_code
from gradcheck_cli.records.files import real_path, write_report_file
from gradcheck_cli.render.history import get_run_renderer
from gradcheck_cli.run.preflight import check_output


def report_run(path: Path, fmt: str, output: Path | None, fail_on: str, *, width: int, color: bool) -> int:
    """The `report` command: read, judge, render to stdout or `output`; returns the exit code."""
    if output is not None:  # before the work, as analyze: never over code or the file it reads
        check_output(output, {real_path(path): "the run file"})
    report = build_run_report(path)
    text = get_run_renderer(fmt, width=width, color=color and output is None).render(report)
    if output is None:
        sys.stdout.write(text)
    else:
        write_report_file(output, text)
    code = run_exit_code(report, fail_on)
    found = len(report.trends)
    where = f"; wrote {output}" if output is not None else ""
    print(
        f"gradcheck report: {len(report.history.steps)} measured steps, {found} trend "
        f"finding{'s' if found != 1 else ''}{where}",
        file=sys.stderr,
    )
    return code
