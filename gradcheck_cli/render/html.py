"""--format html: one self-contained page (inline CSS and SVG, no script, no URL) with the
gradient-flow chart per layer on a log scale, through-time curves, findings and suggestions.

The chart is the picture people draw by hand with plot_grad_flow: one bar per layer for the
gradient reaching its output, and a line for each layer's gradient/weight ratio, on decades.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import ClassVar

from gradcheck_cli.findings import Finding, LayerStatus
from gradcheck_cli.render.base import fmt_num
from gradcheck_cli.render.escape import clean_report
from gradcheck_cli.render.sections import FIX_HEADERS, baseline_lines, fix_rows, training_line
from gradcheck_cli.render.trained import html_parts
from gradcheck_cli.report import Report
from gradcheck_cli.stats import ThroughTime
from gradcheck_cli.text import count

STATUS_COLOR = {
    LayerStatus.OK: "#3b82f6",
    LayerStatus.VANISHING: "#94a3b8",
    LayerStatus.EXPLODING: "#dc2626",
    LayerStatus.DEAD: "#a21caf",
    LayerStatus.SATURATED: "#d97706",
    LayerStatus.NONFINITE: "#dc2626",
    LayerStatus.NO_GRAD: "#dc2626",
    LayerStatus.FROZEN: "#d1d5db",
}
VERDICT_COLOR = {"healthy": "#15803d", "warning": "#b45309", "error": "#b91c1c"}
CSS = """
body { font: 14px/1.45 system-ui, sans-serif; color: #111827; margin: 24px auto; max-width: 980px; }
h1 { font-size: 20px; } h2 { font-size: 17px; margin-top: 28px; }
.meta { color: #4b5563; } .verdict { font-weight: 700; }
svg { background: #fff; border: 1px solid #e5e7eb; }
svg text { font: 11px system-ui, sans-serif; fill: #374151; }
.grid { stroke: #e5e7eb; } .ratio { fill: none; stroke: #111827; stroke-width: 1.5; }
.curve { fill: none; stroke: #2563eb; stroke-width: 2; }
table { border-collapse: collapse; margin: 8px 0; } td, th { padding: 2px 10px; text-align: left; }
th { border-bottom: 1px solid #9ca3af; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.finding { border-left: 4px solid; padding: 4px 12px; margin: 10px 0; background: #f9fafb; }
.error { border-color: #b91c1c; } .warning { border-color: #b45309; } .info { border-color: #2563eb; }
code { background: #f3f4f6; padding: 0 3px; }
"""
W, H, LEFT, RIGHT, TOP, BOTTOM = 900, 300, 56, 44, 12, 90


def _positive(values: Sequence[float]) -> list[float]:
    return [v for v in values if v > 0 and math.isfinite(v)]


def _decades(values: Sequence[float]) -> tuple[int, int]:
    good = _positive(values)
    if not good:
        return -1, 0
    # The floor sits a bit below the smallest value so that its bar still shows.
    low, high = math.floor(math.log10(min(good)) - 0.3), math.ceil(math.log10(max(good)))
    return low, max(high, low + 1)


def _y(value: float, low: int, high: int, height: int = H - TOP - BOTTOM) -> float:
    """Pixel row of a value on the log axis; zero and non-finite values sit on the floor."""
    if not (value > 0 and math.isfinite(value)):
        return TOP + height
    frac = (math.log10(value) - low) / (high - low)
    return TOP + height * (1 - min(1.0, max(0.0, frac)))


def _axis(low: int, high: int, width: int, height: int = H - TOP - BOTTOM) -> list[str]:
    """A grid line per decade, labelled every few decades so that about eight labels show."""
    parts = []
    stride = max(1, math.ceil((high - low) / 8))
    for decade in range(low, high + 1):
        y = _y(10.0**decade, low, high, height)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{width - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        if (high - decade) % stride == 0:
            parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">1e{decade}</text>')
    return parts


def _legend(report: Report) -> str:
    present = list(dict.fromkeys(row.status for row in report.layers))
    items = "".join(f'<tspan fill="{STATUS_COLOR[status]}">■</tspan> {status.value}  ' for status in present)
    return f'<text x="{LEFT}" y="{H - 6}">{items} · bars: ∇ at each layer output · line: grad/weight ratio · log scale</text>'


def flow_chart(report: Report) -> str:
    rows = report.layers
    if not rows:
        return "<p>No parameter-owning layers were measured.</p>"
    low, high = _decades([r.stats.act_grad_norm for r in rows] + [r.stats.grad_weight_ratio for r in rows])
    step = (W - LEFT - RIGHT) / len(rows)
    parts = [
        f'<svg class="grad-flow" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img">',
        *_axis(low, high, W),
    ]
    points = []
    for i, row in enumerate(rows):
        s, x = row.stats, LEFT + i * step
        y = _y(s.act_grad_norm, low, high)
        tip = f"{s.name} ({s.type}): ∇output {fmt_num(s.act_grad_norm)}, grad/weight {fmt_num(s.grad_weight_ratio)}, {row.status.value}"
        parts.append(
            f'<rect class="bar" x="{x + step * 0.15:.1f}" y="{y:.1f}" width="{step * 0.7:.1f}" '
            f'height="{H - BOTTOM - y:.1f}" fill="{STATUS_COLOR[row.status]}"><title>{escape(tip)}</title></rect>'
        )
        points.append(f"{x + step / 2:.1f},{_y(s.grad_weight_ratio, low, high):.1f}")
        if len(rows) <= 48:
            parts.append(
                f'<text transform="translate({x + step / 2 + 4:.1f},{H - BOTTOM + 6}) rotate(60)">{escape(s.name[:18])}</text>'
            )
    parts.append(f'<polyline class="ratio" points="{" ".join(points)}"/>')
    parts.append(_legend(report))
    return "\n".join([*parts, "</svg>"])


def through_time_chart(tt: ThroughTime, width: int = W, height: int = 200) -> str:
    curve = list(tt.curve)
    floor = max(-12, _decades(curve)[0])
    inner = height - TOP - 30
    parts = [
        f'<svg class="through-time" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
    ]
    parts += _axis(floor, 0, width, inner)
    span = max(1, len(curve) - 1)
    points = " ".join(
        f"{LEFT + (width - LEFT - RIGHT) * i / span:.1f},{_y(v, floor, 0, inner):.1f}"
        for i, v in enumerate(curve)
    )
    parts.append(f'<polyline class="curve" points="{points}"/>')
    parts.append(
        f'<text x="{LEFT}" y="{height - 8}">{escape(tt.module)} ({escape(tt.type)}): gradient at each step, '
        f"first step left, relative to the last · ×{tt.per_step_factor:.3f} per step · horizon {count(tt.horizon, 'step')}</text>"
    )
    return "\n".join([*parts, "</svg>"])


def _finding(finding: Finding) -> str:
    layers = ", ".join(f"<code>{escape(n)}</code>" for n in finding.layers[:8])
    more = f" and {len(finding.layers) - 8} more" if len(finding.layers) > 8 else ""
    items = "".join(
        f"<li><b>{escape(s.fix)}</b>: {escape(s.text)}"
        + (f" <code>{escape(s.where)}</code>" if s.where else "")
        + "</li>"
        for s in finding.suggestions
    )
    return (
        f'<div class="finding {finding.severity.value}"><b>{finding.severity.value.upper()}</b> '
        f"<code>{escape(finding.id)}</code><p>{escape(finding.message)}</p>"
        + (f"<p>layers: {layers}{more}</p>" if layers else "")
        + (f"<ul>{items}</ul>" if items else "")
        + "</div>"
    )


def _layer_table(report: Report) -> str:
    rows = "".join(
        f"<tr><td class=num>{r.stats.index}</td><td><code>{escape(r.stats.name)}</code></td><td>{escape(r.stats.type)}</td>"
        f"<td class=num>{fmt_num(r.stats.act_grad_norm)}</td><td class=num>{fmt_num(r.stats.grad_weight_ratio)}</td>"
        f'<td style="color:{STATUS_COLOR[r.status]}">{r.status.value}</td></tr>'
        for r in report.layers
    )
    head = "<tr><th>#</th><th>layer</th><th>type</th><th>∇output</th><th>grad/weight</th><th>status</th></tr>"
    return f"<table>{head}{rows}</table>"


def report_section(report: Report) -> str:
    m, r, s = report.model, report.run, report.summary
    parts = [
        f"<section><h1>gradcheck <code>{escape(report.target)}</code>: "
        f'<span class="verdict" style="color:{VERDICT_COLOR[s.status]}">{s.status}</span> '
        f"({count(s.errors, 'error')}, {count(s.warnings, 'warning')})</h1>",
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
        "<p>Gradients flow through every layer; nothing to fix.</p>"
    ]
    parts += _later_stages(report)
    parts += ["<h2>Layers</h2>", _layer_table(report), "</section>"]
    return "\n".join(parts)


def _later_stages(report: Report) -> list[str]:
    """--steps, --baseline and --try-fixes, where they ran."""
    parts: list[str] = []
    if report.training is not None:
        parts += ["<h2>Training</h2>", f"<p>{escape(training_line(report.training))}</p>"]
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


def page(reports: Sequence[Report]) -> str:
    title = escape(", ".join(r.target for r in reports))
    body = "\n<hr>\n".join(report_section(r) for r in reports)
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
