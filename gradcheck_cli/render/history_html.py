"""`gradcheck report --format html`: one self-contained page of small multiples (inline SVG).

One small chart per layer (gradient norm, log scale), per activation (dead or saturated
fraction) and for the loss, all against the training step, with NaN/inf steps marked in red
and the layers a trend finding names outlined. No scripts, no external files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from gradcheck_cli.judge.run_verdict import RunReport, loss_series, unit_rows
from gradcheck_cli.render.base import fmt_num
from gradcheck_cli.render.escape import clean_report

WIDTH, HEIGHT, PAD = 250, 110, 8
COLOURS = {"error": "#c62828", "warning": "#b26a00", "info": "#1565c0"}

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 20px 0 8px; }
.grid { display: flex; flex-wrap: wrap; gap: 10px; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 6px 8px; width: 250px; }
.card.flagged { border: 2px solid #b26a00; }
.name { font: 12px ui-monospace, monospace; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.meta { font-size: 11px; color: #666; }
ul.findings { padding-left: 18px; margin: 4px 0; }
"""


def _scale(values: Sequence[float], log: bool) -> list[float | None]:
    out: list[float | None] = []
    for v in values:
        ok = math.isfinite(v) and (v > 0 or not log)
        out.append((math.log10(v) if log else v) if ok else None)
    return out


def _polyline(steps: Sequence[int], ys: Sequence[float | None]) -> list[str]:
    known = [y for y in ys if y is not None]
    if not known:
        return []
    low, high = min(known), max(known)
    span_y = (high - low) or 1.0
    span_x = (steps[-1] - steps[0]) or 1
    segments: list[list[str]] = [[]]
    for step, y in zip(steps, ys, strict=True):
        if y is None:
            segments.append([])
            continue
        x = PAD + (step - steps[0]) / span_x * (WIDTH - 2 * PAD)
        top = PAD + (1 - (y - low) / span_y) * (HEIGHT - 2 * PAD - 12)
        segments[-1].append(f"{x:.1f},{top:.1f}")
    return [" ".join(seg) for seg in segments if seg]


def chart(steps: Sequence[int], values: Sequence[float], *, log: bool, bad: Sequence[bool] = ()) -> str:
    """An SVG line chart of one series against the step; red ticks where `bad`."""
    parts = [f'<svg width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img">']
    span_x = (steps[-1] - steps[0]) or 1 if steps else 1
    for step, flagged in zip(steps, bad, strict=False):
        if flagged:
            x = PAD + (step - steps[0]) / span_x * (WIDTH - 2 * PAD)
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{HEIGHT - 12}" stroke="#e53935" />')
    for points in _polyline(steps, _scale(values, log)):
        parts.append(f'<polyline fill="none" stroke="#1f5fbf" stroke-width="1.5" points="{points}" />')
    if steps:
        parts.append(f'<text x="{PAD}" y="{HEIGHT - 1}" font-size="10" fill="#666">step {steps[0]}</text>')
        parts.append(
            f'<text x="{WIDTH - PAD}" y="{HEIGHT - 1}" font-size="10" fill="#666" text-anchor="end">{steps[-1]}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _range(values: Sequence[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "no finite values"
    return f"{fmt_num(min(finite))} .. {fmt_num(max(finite))}, last {fmt_num(values[-1])}"


def _card(name: str, meta: str, svg: str, flagged: bool) -> str:
    cls = "card flagged" if flagged else "card"
    return (
        f'<div class="{cls}"><div class="name" title="{escape(name)}">{escape(name)}</div>'
        f'<div class="meta">{escape(meta)}</div>{svg}</div>'
    )


class RunHtmlRenderer:
    def render(self, report: RunReport) -> str:
        report = clean_report(report)  # as analyze's HTML: control characters shown, then escaped
        history = report.history
        steps = list(history.step_numbers)
        flagged = {name for f in report.trends for name in f.layers}
        layers = []
        for name in history.layer_names():
            norms = history.layer_series(name, "grad_norm")
            bad = [n > 0 for n in history.layer_series(name, "nonfinite")]
            fit = report.fits.get(name)
            slope = "" if fit is None else f"; {fit.orders_per_1000_steps:+.2f} orders/1k steps"
            layers.append(
                _card(name, _range(norms) + slope, chart(steps, norms, log=True, bad=bad), name in flagged)
            )
        units = [
            _card(
                f"{name} ({measure.replace('_', ' ')})",
                f"after {after}; " + _range(series),
                chart(steps, series, log=False),
                after in flagged,
            )
            for name, after, measure, series in unit_rows(report)
        ]
        loss = loss_series(report)
        sections = [self._header(report), "<h2>Gradient norm per layer (log scale)</h2>", _grid(layers)]
        if units:
            sections += ["<h2>Activations</h2>", _grid(units)]
        if any(not math.isnan(v) for v in loss):
            sections += [
                "<h2>Loss</h2>",
                _grid([_card("loss", _range(loss), chart(steps, loss, log=False), False)]),
            ]
        body = "\n".join(sections)
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>gradcheck report: {escape(report.log.path)}</title><style>{STYLE}</style></head>"
            f"<body>\n{body}\n</body></html>\n"
        )

    def _header(self, report: RunReport) -> str:
        steps = report.history.step_numbers
        title = f"gradcheck report: {report.log.model or 'training run'}"
        sub = f"{report.log.path}: {len(steps)} measured steps, {steps[0]} .. {steps[-1]}"
        items = [_item(f.severity.value, f.id, f.message) for f in report.trends] or ["<li>none</li>"]
        html = [f"<h1>{escape(title)}</h1><div class='meta'>{escape(sub)}</div>"]
        html.append(f"<h2>Trend findings over the whole run</h2><ul class='findings'>{''.join(items)}</ul>")
        if report.log.logged:
            logged = [
                _item(str(d.get("severity")), str(d.get("id")), f"step {s}: {d.get('message')}")
                for s, d in report.log.logged
            ]
            html.append(f"<h2>Findings the monitor logged</h2><ul class='findings'>{''.join(logged)}</ul>")
        return "\n".join(html)


def _item(severity: str, rule_id: str, message: str) -> str:
    colour = COLOURS.get(severity, "#222")
    return (
        f'<li><b style="color:{colour}">{escape(severity)}</b> <code>{escape(rule_id)}</code>: '
        f"{escape(message)}</li>"
    )


def _grid(cards: Sequence[str]) -> str:
    return '<div class="grid">' + "".join(cards) + "</div>"
