"""GitHub Actions annotations: `::error file=model.py,line=12::message` on the model's line.

Workflow commands are read from the step's log (stdout and stderr alike); they go to stderr here
so that `--format json` on stdout stays valid JSON.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from gradcheck_cli.load.source import relative_path
from gradcheck_cli.records.findings import Finding, Severity
from gradcheck_cli.records.report import Report
from gradcheck_cli.render.escape import visible

COMMAND = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def in_github_actions(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get("GITHUB_ACTIONS") == "true"


def finding_location(report: Report, finding: Finding) -> tuple[str, int | None] | None:
    """The first suggestion's `where`, else the source line of the finding's first layer."""
    for suggestion in finding.suggestions:
        if suggestion.where:
            return _split_where(suggestion.where)
    sources = {row.stats.name: row.stats.source for row in report.layers}
    for name in finding.layers:
        source = sources.get(name)
        if source is not None:
            return source.file, source.line
    return None


def _split_where(where: str) -> tuple[str, int | None]:
    file, sep, line = where.rpartition(":")
    if sep and line.isdigit():
        return file, int(line)
    return where, None


def _escape_data(text: str) -> str:
    """Workflow-command data: %, CR and LF encoded; other control characters shown as escapes so a
    module name cannot colour or rewrite the CI log."""
    encoded = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return visible(encoded)


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(report: Report, finding: Finding, cwd: Path) -> str:
    properties = {"title": f"gradcheck {finding.id} ({report.target})"}
    location = finding_location(report, finding)
    # Only a file inside the repository (the working directory in CI) can carry an annotation; an
    # installed builtin's source cannot.
    path = cwd / location[0] if location is not None else None
    file = relative_path(str(path), cwd) if path is not None and path.is_file() else None
    if location is not None and file is not None:
        properties["file"] = file
        if location[1]:
            properties["line"] = str(location[1])
    props = ",".join(f"{k}={_escape_property(v)}" for k, v in properties.items())
    return f"::{COMMAND[finding.severity]} {props}::{_escape_data(finding.message)}"


def github_annotations(report: Report, cwd: Path) -> list[str]:
    return [annotation(report, finding, cwd) for finding in report.findings]
