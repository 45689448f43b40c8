"""--format html: one self-contained page (inline CSS and SVG, no script, no URL) with the
gradient-flow chart per layer on a log scale, through-time curves, findings and suggestions.

The chart is the picture people draw by hand with plot_grad_flow: one bar per layer for the
gradient reaching its output, and a line for each layer's gradient/weight ratio, on decades.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import escape
from typing import ClassVar

from gradcheck_cli.records.findings import Finding
from gradcheck_cli.records.report import Report
from gradcheck_cli.records.text import count
from gradcheck_cli.render.base import fmt_num
from gradcheck_cli.render.charts import flow_chart, history_charts, layer_colors, through_time_chart
from gradcheck_cli.render.escape import clean_report
from gradcheck_cli.render.headroom import headroom_html
from gradcheck_cli.render.precision import html_parts as precision_html
from gradcheck_cli.render.sections import FIX_HEADERS, baseline_lines, fix_rows, training_line
from gradcheck_cli.render.trained import html_parts

VERDICT_COLOR = {"healthy": "#15803d", "warning": "#b45309", "error": "#b91c1c"}
CSS = """
body { font: 14px/1.45 system-ui, sans-serif; color: #111827; margin: 24px auto; max-width: 980px; }
h1 { font-size: 20px; } h2 { font-size: 17px; margin-top: 28px; }
.meta { color: #4b5563; } .verdict { font-weight: 700; }
svg { background: #fff; border: 1px solid #e5e7eb; }
svg text { font: 11px system-ui, sans-serif; fill: #374151; }
.grid { stroke: #e5e7eb; } .ratio { fill: none; stroke: #111827; stroke-width: 1.5; }
.curve { fill: none; stroke: #2563eb; stroke-width: 2; } .curve-dot, .ratio-dot { fill: #111827; }
.horizon { stroke: #d97706; stroke-dasharray: 4 3; } .underflow { stroke: #dc2626; stroke-width: 3; }
text.zero { fill: #dc2626; font-weight: 600; } .multiples { display: flex; flex-wrap: wrap; gap: 8px; }
.summary td:first-child a { color: inherit; }
table { border-collapse: collapse; margin: 8px 0; } td, th { padding: 2px 10px; text-align: left; }
th { border-bottom: 1px solid #9ca3af; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.finding { border-left: 4px solid; padding: 4px 12px; margin: 10px 0; background: #f9fafb; }
.error { border-color: #b91c1c; } .warning { border-color: #b45309; } .info { border-color: #2563eb; }
code { background: #f3f4f6; padding: 0 3px; }
"""


def _prose(text: str) -> str:
    """A message as HTML: escaped, with `code` spans as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(text))


def _finding(finding: Finding) -> str:
    layers = ", ".join(f"<code>{escape(n)}</code>" for n in finding.layers[:8])
    more = f" and {len(finding.layers) - 8} more" if len(finding.layers) > 8 else ""
    items = "".join(
        f"<li><b>{escape(s.fix)}</b>: {_prose(s.text)}"
        + (f" <code>{escape(s.where)}</code>" if s.where else "")
        + "</li>"
        for s in finding.suggestions
    )
    return (
        f'<div class="finding {finding.severity.value}"><b>{finding.severity.value.upper()}</b> '
        f"<code>{escape(finding.id)}</code><p>{_prose(finding.message)}</p>"
        + (f"<p>layers: {layers}{more}</p>" if layers else "")
        + (f"<ul>{items}</ul>" if items else "")
        + "</div>"
    )


def _layer_table(report: Report) -> str:
    colors = layer_colors(report)
    rows = "".join(
        f"<tr><td><code>{escape(r.stats.name)}</code></td><td>{escape(r.stats.type)}</td>"
        f"<td class=num>{fmt_num(r.stats.act_grad_norm) if r.stats.hooked else '—'}</td>"
        f"<td class=num>{fmt_num(r.stats.grad_weight_ratio)}</td>"
        f'<td style="color:{colors.get(r.stats.name, "#4b5563")}">{r.status.value}</td></tr>'
        for r in report.layers
    )
    head = "<tr><th>layer</th><th>type</th><th>∇output</th><th>grad/weight</th><th>status</th></tr>"
    return f"<table>{head}{rows}</table>"


def _layers(report: Report) -> str:
    """The layer table, folded away when long (the chart above already shows every layer)."""
    table = _layer_table(report)
    if len(report.layers) <= 12:
        return table
    return f"<details><summary>{count(len(report.layers), 'layer')}</summary>{table}</details>"


def report_section(report: Report) -> str:
    m, r, s = report.model, report.run, report.summary
    parts = [
        f'<section id="{_anchor(report)}"><h1>gradcheck <code>{escape(report.target)}</code>: '
        f'<span class="verdict" style="color:{VERDICT_COLOR[s.status]}">{s.status}</span> '
        f"({count(s.errors, 'error')}, {count(s.warnings, 'warning')}"
        + (f", {s.ignored} ignored" if s.ignored else "")
        + ")</h1>",
        f'<p class="meta">{escape(m.class_name)} · {m.parameters:,} parameters · {escape(m.device)} {escape(m.dtype)} · '
        f"inputs {escape(', '.join(r.inputs))} · loss {escape(r.loss)} · {count(r.batches, 'batch')} · seed {r.seed}</p>",
        *html_parts(report),
        "<h2>Gradient flow per layer</h2>",
        flow_chart(report),
    ]
    if report.through_time:
        parts += ["<h2>Gradient through time</h2>", *(through_time_chart(tt) for tt in report.through_time)]
    parts.append("<h2>Findings</h2>")
    parts += [_finding(f) for f in report.findings] or [
        f"<p>No findings apart from {count(len(report.ignored), 'ignored finding')} (below).</p>"
        if report.ignored
        else "<p>Gradients flow through every layer within the thresholds; nothing to fix.</p>"
    ]
    parts += _ignored(report)
    parts += _later_stages(report)
    parts += precision_html(report.precision)
    parts += ["<h2>Layers</h2>", _layers(report), "</section>"]
    return "\n".join(parts)


def _later_stages(report: Report) -> list[str]:
    """--steps, --baseline and --try-fixes, where they ran."""
    parts: list[str] = []
    if report.training is not None:
        parts += ["<h2>Training</h2>", f"<p>{escape(training_line(report.training))}</p>"]
        parts.append(history_charts(report.training, report))
    if report.lr_headroom is not None:
        parts += ["<h2>Learning-rate headroom</h2>", headroom_html(report.lr_headroom)]
    if report.baseline is not None:
        items = "".join(f"<li>{escape(line)}</li>" for line in baseline_lines(report.baseline))
        parts += ["<h2>Baseline</h2>", f"<ul>{items}</ul>"]
    if report.fixes is not None:
        head = "".join(f"<th>{escape(h)}</th>" for h in FIX_HEADERS)
        rows = "".join(
            "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>"
            for row in fix_rows(report.fixes)
        )
        table = f"<table><tr>{head}</tr>{rows}</table>" if rows else "<p>tried nothing: no error findings</p>"
        parts += ["<h2>Tried fixes</h2>", table]
    return parts


def _anchor(report: Report) -> str:
    return "target-" + "".join(c if c.isalnum() else "-" for c in report.target)


def _ignored(report: Report) -> list[str]:
    if not report.ignored:
        return []
    rows = "".join(
        f"<tr><td>{i.finding.severity.value}</td><td><code>{escape(i.finding.id)}</code></td>"
        f"<td>{escape(', '.join(i.finding.layers[:4]) + (' …' if len(i.finding.layers) > 4 else ''))}</td>"
        f"<td>{escape(i.reason)}</td></tr>"
        for i in report.ignored
    )
    head = "<tr><th>severity</th><th>finding</th><th>layers</th><th>ignored by</th></tr>"
    return ["<h3>Ignored</h3>", f"<table>{head}{rows}</table>"]


def summary_table(reports: Sequence[Report]) -> str:
    """A multi-target page starts with one row per target, linked to its section."""
    rows = "".join(
        f'<tr><td><a href="#{_anchor(r)}"><code>{escape(r.target)}</code></a></td>'
        f'<td style="color:{VERDICT_COLOR[r.summary.status]};font-weight:700">{r.summary.status}</td>'
        f"<td class=num>{r.summary.errors}</td><td class=num>{r.summary.warnings}</td>"
        f"<td class=num>{r.summary.ignored}</td>"
        f"<td>{escape(', '.join(dict.fromkeys(f.id for f in r.findings))) or '—'}</td></tr>"
        for r in reports
    )
    head = "<tr><th>target</th><th>verdict</th><th>errors</th><th>warnings</th><th>ignored</th><th>findings</th></tr>"
    worst = max(("healthy", "warning", "error").index(r.summary.status) for r in reports)
    status = ("healthy", "warning", "error")[worst]
    return (
        f'<h1>gradcheck: <span style="color:{VERDICT_COLOR[status]}">{status}</span> '
        f'({count(len(reports), "target")})</h1>\n<table class="summary">{head}{rows}</table>'
    )


def page(reports: Sequence[Report]) -> str:
    title = escape(", ".join(r.target for r in reports))
    sections = [report_section(r) for r in reports]
    body = "\n<hr>\n".join(([summary_table(reports)] if len(reports) > 1 else []) + sections)
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>gradcheck: {title}</title>\n'
        f"<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


class HtmlRenderer:
    format: ClassVar[str] = "html"

    def render(self, report: Report) -> str:
        return page([clean_report(report)])

    def render_many(self, reports: Sequence[Report]) -> str:
        return page([clean_report(r) for r in reports])
