"""The terminal report's verdict panel: the status, each finding with its fixes, the ignored ones."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from gradcheck_cli.records.findings import Finding, Severity
from gradcheck_cli.records.report import Report
from gradcheck_cli.records.text import count, span

SEVERITY_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
VERDICT_STYLE = {"healthy": "bold green", "warning": "bold yellow", "error": "bold red"}


def nothing_text(report: Report) -> str:
    if report.ignored:
        return f"No findings apart from {count(len(report.ignored), 'ignored finding')} (below)."
    return "Gradients flow through every layer within the thresholds; nothing to fix."


def ignored_block(report: Report) -> Table:
    """Suppressed findings, dim: what was ignored, where, and by which setting."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True, min_width=9)
    grid.add_column(ratio=1)
    for item in report.ignored:
        f = item.finding
        text = Text(f"{f.id} ({f.severity.value})", style="bold")
        if f.layers:
            text.append(f" on {span(f.layers)}")
        text.append(f": {item.reason}", style="dim")
        grid.add_row(Text("IGNORED", style="dim"), text)
    return grid


def finding_block(finding: Finding) -> Table:
    """One finding: severity and id, the message, then each fix with where it applies."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True, min_width=9)
    grid.add_column(ratio=1)
    grid.add_row(
        Text(finding.severity.value.upper(), style=SEVERITY_STYLE[finding.severity]),
        Text(finding.id, style="bold"),
    )
    grid.add_row("", Text(finding.message))
    for s in finding.suggestions:
        text = Text(s.text)
        if s.where:
            text.append(f"  {s.where}", style="dim")
        grid.add_row(Text(f"  → {s.fix}", style="bold green"), text)
    return grid


def summary_panel(report: Report) -> Panel:
    s = report.summary
    verdict = Text()
    verdict.append(s.status.upper(), style=VERDICT_STYLE[s.status])
    verdict.append(
        f"  {count(s.errors, 'error')} · {count(s.warnings, 'warning')} · {count(s.infos, 'info')}"
        + (f" · {s.ignored} ignored" if s.ignored else "")
        + "\n"
    )
    if not report.findings:
        verdict.append(nothing_text(report))
    verdict.rstrip()
    blocks: list[RenderableType] = []
    for finding in report.findings:
        blocks += [Text(""), finding_block(finding)]
    if report.ignored:
        blocks += [Text(""), ignored_block(report)]
    body = Group(verdict, *blocks)
    return Panel(body, title="verdict", title_align="left", border_style=VERDICT_STYLE[s.status].split()[-1])
