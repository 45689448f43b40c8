"""`gradcheck scale --format html`: the report as one page, with log-log charts of each module's RMS
against width (normalised to the smallest width, so a slope is an exponent) beside the slopes the
declared parametrization expects."""

from __future__ import annotations

import html
import math

from gradcheck_cli.records.scaling import QUANTITIES, ModuleScaling, ScaleReport

W, H, PAD = 300, 220, 36
COLORS = {"ok": "#4a7", "off": "#c33", "unchecked": "#999"}


def render_html(report: ScaleReport, table: str) -> str:
    """The page: the charts, the findings, then `table` (the terminal report) as text."""
    charts = "".join(chart(report, q) for q in QUANTITIES)
    findings = "".join(
        f"<li><b>{f.severity.value}</b> <code>{f.id}</code>: {html.escape(f.message)}</li>"
        for f in report.findings
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>gradcheck scale</title>"
        "<style>body{font-family:sans-serif;margin:2em}svg{margin:0 1em 1em 0;background:#fafafa}"
        "pre{font-size:12px}</style></head><body>"
        f"<h1>gradcheck scale {html.escape(report.target)}: {report.summary.status}</h1>"
        f"<div>{charts}</div><ul>{findings}</ul><pre>{html.escape(table)}</pre></body></html>\n"
    )


def _points(report: ScaleReport, module: ModuleScaling, quantity: str) -> list[tuple[float, float]]:
    values = module.rms.get(quantity, ())
    base = next((v for v in values if v), None)
    return [
        (math.log2(w / report.widths[0]), math.log2(v / base))
        for w, v in zip(report.widths, values, strict=False)
        if v and base
    ]


def chart(report: ScaleReport, quantity: str) -> str:
    """One quantity: a line per module (green in its band, red outside it), log2 axes."""
    lines = {m.name: _points(report, m, quantity) for m in report.modules}
    span_x = max(math.log2(report.widths[-1] / report.widths[0]), 1e-9)
    ys = [y for pts in lines.values() for _, y in pts] + [0.0, span_x, -span_x]
    low, high = min(ys), max(ys)
    span_y = max(high - low, 1e-9)

    def xy(x: float, y: float) -> str:
        return f"{PAD + x / span_x * (W - 2 * PAD):.1f},{H - PAD - (y - low) / span_y * (H - 2 * PAD):.1f}"

    parts = [f"<svg width='{W}' height='{H}' role='img'><title>{quantity}</title>"]
    parts.append(
        f"<text x='{PAD}' y='16' font-size='13'>{quantity}: log2 RMS / RMS at {report.widths[0]}</text>"
    )
    for slope_value, dash in ((0.0, "4 3"), (0.5, "1 3"), (-0.5, "1 3"), (1.0, "6 2")):
        parts.append(
            f"<polyline points='{xy(0, 0)} {xy(span_x, slope_value * span_x)}' fill='none' "
            f"stroke='#bbb' stroke-dasharray='{dash}'><title>slope {slope_value:+g}</title></polyline>"
        )
    for module in report.modules:
        pts = lines[module.name]
        if len(pts) > 1:
            color = COLORS.get(module.status, "#999")
            parts.append(
                f"<polyline points='{' '.join(xy(x, y) for x, y in pts)}' fill='none' stroke='{color}' "
                f"stroke-width='1.5'><title>{html.escape(module.name)} ({module.role})</title></polyline>"
            )
    widths = ", ".join(str(w) for w in report.widths)
    parts.append(
        f"<text x='{PAD}' y='{H - 8}' font-size='11'>width {html.escape(report.key)} = {widths}</text>"
    )
    return "".join(parts) + "</svg>"
