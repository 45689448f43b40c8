"""--format markdown: GitHub-flavoured Markdown for pull-request comments and the step summary."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from gradcheck_cli.records.findings import Finding
from gradcheck_cli.records.outcome import TargetFailure
from gradcheck_cli.records.report import Report
from gradcheck_cli.records.text import count
from gradcheck_cli.render.base import fmt_num
from gradcheck_cli.render.escape import clean_report, md_code, md_text
from gradcheck_cli.render.headroom import HEADROOM_HEADERS, headroom_line, headroom_rows
from gradcheck_cli.render.precision import markdown_lines as precision_lines
from gradcheck_cli.render.sections import FIX_HEADERS, baseline_lines, fix_rows, training_line
from gradcheck_cli.render.trained import markdown_lines

MAX_LAYERS_LISTED = 4
MAX_TABLE_ROWS = 60
VERDICT = {
    "healthy": "✅ healthy",
    "warning": "⚠️ warning",
    "error": "❌ error",
    "could-not-run": "⛔ could not run",
}


def _cell(text: str) -> str:
    """A table cell: pipes escaped, newlines folded, so a message cannot break the table."""
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return md_code(text)


def _row(*cells: str) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> list[str]:
    marks = [("---:" if a == "r" else "---") for a in align.ljust(len(headers), "l")]
    return [_row(*headers), "| " + " | ".join(marks) + " |", *(_row(*r) for r in rows)]


def _layers_text(finding: Finding) -> str:
    names = [_code(n) for n in finding.layers[:MAX_LAYERS_LISTED]]
    extra = len(finding.layers) - MAX_LAYERS_LISTED
    return ", ".join(names) + (f" (+{extra})" if extra > 0 else "") if names else "—"


def _counts(report: Report) -> str:
    s = report.summary
    return f"{count(s.errors, 'error')}, {count(s.warnings, 'warning')}" + (
        f", {s.ignored} ignored" if s.ignored else ""
    )


def heading(report: Report, level: str = "##") -> str:
    return f"{level} gradcheck {_code(report.target)}: {VERDICT[report.summary.status]} ({_counts(report)})"


def model_line(report: Report) -> str:
    m, r = report.model, report.run
    steps = f" · {count(r.steps, 'step')}" if r.steps else ""
    return (
        f"{_code(m.class_name)} · {m.parameters:,} parameters ({m.trainable:,} trainable) · {m.device} {m.dtype} · "
        f"inputs {md_text(', '.join(r.inputs)) or '—'} · loss {md_text(r.loss)} · {count(r.batches, 'batch')} · seed {r.seed}{steps}"
    )


def findings_section(report: Report) -> list[str]:
    if not report.findings:
        return [_nothing(report), *ignored_section(report)]
    rows = [(f.severity.value, _code(f.id), _layers_text(f), md_text(f.message)) for f in report.findings]
    lines = _table(("severity", "finding", "layers", "message"), rows)
    suggestions = [
        f"- {_code(f.id)} → **{s.fix}**: {md_text(s.text)}" + (f" ({_code(s.where)})" if s.where else "")
        for f in report.findings
        for s in f.suggestions
    ]
    if suggestions:
        lines += ["", "**What to change**", "", *suggestions]
    return lines + ignored_section(report)


def _nothing(report: Report) -> str:
    if report.ignored:
        return f"No findings apart from {count(len(report.ignored), 'ignored finding')} (below)."
    return "Gradients flow through every layer within the thresholds; nothing to fix."


def ignored_section(report: Report) -> list[str]:
    """Suppressed findings, with the setting that suppressed each."""
    if not report.ignored:
        return []
    rows = [
        (i.finding.severity.value, _code(i.finding.id), _layers_text(i.finding), md_text(i.reason))
        for i in report.ignored
    ]
    return ["", "**Ignored**", "", *_table(("severity", "finding", "layers", "ignored by"), rows)]


def layers_section(report: Report) -> list[str]:
    rows = [
        (_code(r.stats.name), md_text(r.stats.type), fmt_num(r.stats.act_grad_norm),
         fmt_num(r.stats.grad_weight_ratio), r.status.value)
        for r in report.layers[:MAX_TABLE_ROWS]
    ]  # fmt: skip
    more = len(report.layers) - MAX_TABLE_ROWS
    table = _table(("layer", "type", "∇output", "grad/weight", "status"), rows, align="llrrl")
    note = ["", f"… and {count(more, 'more layer')} (see `--format json`)."] if more > 0 else []
    return [
        f"<details><summary>{count(len(report.layers), 'layer')}</summary>",
        "",
        *table,
        *note,
        "",
        "</details>",
    ]


def through_time_section(report: Report) -> list[str]:
    rows = [
        (_code(tt.module), md_text(tt.type), str(tt.steps), f"{tt.per_step_factor:.3f}", str(tt.horizon))
        for tt in report.through_time
    ]
    return _table(("recurrent module", "type", "steps", "factor per step", "horizon (steps)"), rows, "lllrr")


def report_section(report: Report, level: str = "##") -> str:
    lines = [heading(report, level), "", model_line(report), "", *markdown_lines(report)]
    lines += [*findings_section(report), ""]
    if report.through_time:
        lines += [*through_time_section(report), ""]
    lines += later_stages_section(report)
    lines += precision_lines(report.precision)
    lines += layers_section(report)
    return "\n".join(lines) + "\n"


def later_stages_section(report: Report) -> list[str]:
    """--steps, --baseline and --try-fixes, where they ran."""
    lines: list[str] = []
    if report.training is not None:
        lines += [f"**Training**: {md_text(training_line(report.training))}", ""]
    if report.lr_headroom is not None:
        rows = [tuple(md_text(c) for c in row) for row in headroom_rows(report.lr_headroom)]
        lines += [f"**Learning-rate headroom**: {md_text(headroom_line(report.lr_headroom))}", ""]
        lines += [*_table(HEADROOM_HEADERS, rows, "rrlll"), ""]
    if report.baseline is not None:
        lines += ["**Baseline**", "", *(f"- {md_text(line)}" for line in baseline_lines(report.baseline)), ""]
    if report.fixes is not None:
        rows = [(_code(r[0]), *(md_text(c) for c in r[1:])) for r in fix_rows(report.fixes)]
        body = _table(FIX_HEADERS, rows, "llllrl") if rows else ["tried nothing: no error findings"]
        lines += ["**Tried fixes** (each on a copy of the model, same inputs and seed)", "", *body, ""]
    return lines


def overview(reports: Sequence[Report], failures: Sequence[TargetFailure] = ()) -> str:
    statuses = [r.summary.status for r in reports] + ["could-not-run"] * len(failures)
    worst = max(statuses, key=("healthy", "warning", "error", "could-not-run").index)
    rows = [(_code(r.target), VERDICT[r.summary.status], str(r.summary.errors), str(r.summary.warnings),
             str(r.summary.ignored),
             ", ".join(_code(i) for i in dict.fromkeys(f.id for f in r.findings)) or "—") for r in reports]  # fmt: skip
    rows += [(_code(f.target), VERDICT["could-not-run"], "—", "—", "—", md_text(f.message)) for f in failures]
    table = _table(("target", "verdict", "errors", "warnings", "ignored", "findings"), rows, "llrrrl")
    title = f"## gradcheck: {VERDICT[worst]} ({count(len(statuses), 'target')})"
    return "\n".join([title, "", *table]) + "\n"


class MarkdownRenderer:
    format: ClassVar[str] = "markdown"

    def render(self, report: Report) -> str:
        return report_section(clean_report(report))

    def render_many(self, reports: Sequence[Report], failures: Sequence[TargetFailure] = ()) -> str:
        reports = [clean_report(r) for r in reports]
        return "\n".join([overview(reports, failures), *(report_section(r, "###") for r in reports)])
