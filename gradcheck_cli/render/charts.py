"""The SVG pictures of the HTML report: gradient flow per layer, gradient through time, and the
--steps history as small multiples. Plain SVG strings, no script, drawn on log axes.

Colours follow severity, as the findings do: a layer an error names is red, one a warning names is
amber, everything else neutral. A value that was not measured (a tied copy, a layer that never ran)
is not drawn at all, so a gap never reads as a collapse to the axis floor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from gradcheck_cli.records.findings import Severity
from gradcheck_cli.records.report import Report
from gradcheck_cli.records.stats import ThroughTime, TrainingHistory
from gradcheck_cli.records.text import count
from gradcheck_cli.render.base import fmt_num

SEVERITY_COLOR = {Severity.ERROR: "#dc2626", Severity.WARNING: "#d97706", Severity.INFO: "#2563eb"}
OK_COLOR = "#94a3b8"
W, H, LEFT, RIGHT, TOP = 900, 300, 56, 44, 34
LABEL_CHARS = 22


def _measured(value: float) -> bool:
    return value > 0 and math.isfinite(value)


def decades(values: Sequence[float]) -> tuple[int, int]:
    good = [v for v in values if _measured(v)]
    if not good:
        return -1, 0
    # The floor sits a bit below the smallest value so that its bar still shows.
    low, high = math.floor(math.log10(min(good)) - 0.3), math.ceil(math.log10(max(good)))
    return low, max(high, low + 1)


def log_y(value: float, low: int, high: int, top: float, height: float) -> float:
    frac = (math.log10(value) - low) / (high - low)
    return top + height * (1 - min(1.0, max(0.0, frac)))


def log_axis(low: int, high: int, x0: float, x1: float, top: float, height: float) -> list[str]:
    """A grid line per decade, labelled every few decades so that about eight labels show."""
    parts = []
    stride = max(1, math.ceil((high - low) / 8))
    for decade in range(low, high + 1):
        if (high - decade) % stride:
            continue  # a grid line only where there is a label, so deep axes stay readable
        y = log_y(10.0**decade, low, high, top, height)
        parts.append(f'<line class="grid" x1="{x0}" x2="{x1}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">1e{decade}</text>')
    return parts


def layer_colors(report: Report) -> dict[str, str]:
    """Each named layer's colour: the worst severity among the findings that name it."""
    worst: dict[str, Severity] = {}
    for finding in report.findings:
        for name in finding.layers:
            if name not in worst or finding.severity.rank > worst[name].rank:
                worst[name] = finding.severity
    return {name: SEVERITY_COLOR[severity] for name, severity in worst.items()}


def polylines(points: Sequence[tuple[float, float] | None], css: str) -> list[str]:
    """Polylines through the measured points; a missing point breaks the line."""
    runs: list[list[tuple[float, float]]] = [[]]
    for point in points:
        if point is None:
            runs.append([])
        else:
            runs[-1].append(point)
    return [
        f'<polyline class="{css}" points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in run)}"/>'
        for run in runs
        if len(run) > 1
    ] + [
        f'<circle class="{css}-dot" cx="{run[0][0]:.1f}" cy="{run[0][1]:.1f}" r="2"/>'
        for run in runs
        if len(run) == 1
    ]


def _label(name: str) -> str:
    return name if len(name) <= LABEL_CHARS else "…" + name[-(LABEL_CHARS - 1) :]


def flow_chart(report: Report) -> str:
    rows = report.layers
    if not rows:
        return "<p>No parameter-owning layers were measured.</p>"
    values = [r.stats.act_grad_norm for r in rows] + [r.stats.grad_weight_ratio for r in rows]
    if not any(_measured(v) for v in values):
        return "<p>No finite, nonzero gradient was measured in any layer: nothing to draw (see the findings).</p>"
    low, high = decades(values)
    every = max(1, math.ceil(len(rows) / 48))  # label at most 48 layers, evenly
    bottom = 16 + 6.2 * max(len(_label(r.stats.name)) for r in rows[::every]) * 0.72
    height = H - TOP - bottom
    step = (W - LEFT - RIGHT) / len(rows)
    bar = min(step * 0.7, 64.0)  # two layers should not look like two walls
    colors = layer_colors(report)
    parts = [
        f'<svg class="grad-flow" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img">',
        _flow_legend(report, colors),
        *log_axis(low, high, LEFT, W - RIGHT, TOP, height),
    ]
    points: list[tuple[float, float] | None] = []
    for i, row in enumerate(rows):
        s, x = row.stats, LEFT + i * step
        tip = f"{s.name} ({s.type}): ∇output {fmt_num(s.act_grad_norm)}, grad/weight {fmt_num(s.grad_weight_ratio)}, {row.status.value}"
        if _measured(s.act_grad_norm) and s.hooked:
            y = log_y(s.act_grad_norm, low, high, TOP, height)
            parts.append(
                f'<rect class="bar" x="{x + (step - bar) / 2:.1f}" y="{y:.1f}" width="{bar:.1f}" '
                f'height="{TOP + height - y:.1f}" fill="{colors.get(s.name, OK_COLOR)}"><title>{escape(tip)}</title></rect>'
            )
        elif s.act_grad_norm == 0 and s.hooked:  # measured, and exactly zero: say so on the floor
            parts.append(
                f'<text class="zero" x="{x + step / 2:.1f}" y="{TOP + height - 3:.1f}" text-anchor="middle">0</text>'
            )
        ratio = s.grad_weight_ratio
        points.append((x + step / 2, log_y(ratio, low, high, TOP, height)) if _measured(ratio) else None)
        if i % every == 0:
            parts.append(
                f'<text transform="translate({x + step / 2 + 3:.1f},{TOP + height + 8:.1f}) rotate(45)">'
                f"{escape(_label(s.name))}<title>{escape(s.name)}</title></text>"
            )
    parts += polylines(points, "ratio")
    return "\n".join([*parts, "</svg>"])


def _flow_legend(report: Report, colors: dict[str, str]) -> str:
    used = {SEVERITY_COLOR[f.severity] for f in report.findings if f.layers}
    keys = [(c, s.value) for s, c in SEVERITY_COLOR.items() if c in used] + [(OK_COLOR, "no finding")]
    items = "".join(f'<tspan fill="{c}">■</tspan> {label}   ' for c, label in keys)
    return (
        f'<text x="{LEFT}" y="16">{items}· bars: gradient norm at each layer\'s output · '
        '<tspan font-weight="700">―</tspan> gradient/weight ratio · log scale</text>'
    )


def through_time_chart(tt: ThroughTime, width: int = W, height: int = 220) -> str:
    """The gradient reaching each time step's input, relative to the last step, with the step
    numbers, the horizon marked, and exact zeros (float32 underflow) drawn as such."""
    curve = list(tt.curve)
    floor = decades(curve)[0]  # as deep as the smallest nonzero value: nothing is clamped to a floor
    top, inner = 30, height - 30 - 52
    x0, x1 = LEFT, width - RIGHT
    span = max(1, len(curve) - 1)

    def x_of(i: int) -> float:
        return x0 + (x1 - x0) * i / span

    parts = [
        f'<svg class="through-time" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">',
        f'<text x="{x0}" y="16"><tspan font-weight="600">{escape(tt.module)}</tspan> ({escape(tt.type)}): '
        f"gradient at each step's input, relative to the last step · ×{tt.per_step_factor:.3f} per step · "
        f"horizon {count(tt.horizon, 'step')}</text>",
        *log_axis(floor, 0, x0, x1, top, inner),
    ]
    points = [
        (x_of(i), log_y(v, floor, 0, top, inner)) if _measured(v) else None for i, v in enumerate(curve)
    ]
    parts += polylines(points, "curve")
    zeros = [i for i, v in enumerate(curve) if v == 0]
    if zeros:
        band = top + inner + 10
        parts.append(
            f'<line class="underflow" x1="{x_of(zeros[0]):.1f}" x2="{x_of(zeros[-1]):.1f}" y1="{band}" y2="{band}"/>'
        )
        parts.append(
            f'<text x="{x_of(zeros[0]):.1f}" y="{band - 3}">underflow: exactly 0 at {count(len(zeros), "step")}</text>'
        )
    edge = len(curve) - 1 - tt.horizon
    if 0 <= edge < len(curve) - 1:
        parts.append(
            f'<line class="horizon" x1="{x_of(edge):.1f}" x2="{x_of(edge):.1f}" y1="{top}" y2="{top + inner}"/>'
        )
        anchor, dx = ("end", -4) if x_of(edge) > (x0 + x1) / 2 else ("start", 4)
        parts.append(
            f'<text x="{x_of(edge) + dx:.1f}" y="{top + 12}" text-anchor="{anchor}">'
            f"horizon: {count(tt.horizon, 'step')} back to {tt.horizon_floor:g} of the last</text>"
        )
    parts += _step_ticks(len(curve), x_of, top + inner + 28)
    return "\n".join([*parts, "</svg>"])


def _step_ticks(steps: int, x_of: object, y: float) -> list[str]:
    place = x_of if callable(x_of) else (lambda i: 0.0)
    stride = max(1, 10 ** math.floor(math.log10(max(1, steps - 1))) // (2 if steps > 20 else 1))
    ticks = [*range(0, steps - 1, stride), steps - 1]
    parts = [f'<text x="{place(i):.1f}" y="{y}" text-anchor="middle">{i + 1}</text>' for i in ticks]
    parts.append(
        f'<text x="{place(steps - 1):.1f}" y="{y + 14}" text-anchor="end">time step (the loss is on the last)</text>'
    )
    return parts


def history_charts(history: TrainingHistory, report: Report, size: tuple[int, int] = (210, 130)) -> str:
    """--steps as small multiples: the loss, the whole model's gradient norm, and the gradient norm
    of the layers the findings name (else the first and last layers), one small chart each."""
    series: list[tuple[str, Sequence[float]]] = [("loss", history.loss)]
    if history.total_grad_norm:
        series.append(("gradient norm, whole model", history.total_grad_norm))
    named = [n for f in report.findings for n in f.layers if n in history.grad_norms]
    picks = list(dict.fromkeys(named))[:4] or [
        n for n in list(history.grad_norms)[:1] + list(history.grad_norms)[-1:]
    ]
    series += [(f"∇ {name}", history.grad_norms[name]) for name in dict.fromkeys(picks)]
    charts = "".join(
        _small(title, values, size, history.divergence.step if history.divergence else None)
        for title, values in series
    )
    return f'<div class="multiples">{charts}</div>'


def _small(title: str, values: Sequence[float], size: tuple[int, int], diverged_at: int | None) -> str:
    width, height = size
    left, top, inner = 40, 22, height - 22 - 22
    low, high = decades(values)
    span = max(1, len(values) - 1)
    points = [
        (left + (width - left - 8) * i / span, log_y(v, low, high, top, inner)) if _measured(v) else None
        for i, v in enumerate(values)
    ]
    parts = [
        f'<svg class="small" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
    ]
    parts.append(f'<text x="4" y="14" font-weight="600">{escape(title[:34])}</text>')
    parts += [
        f'<text x="{left - 4}" y="{log_y(10.0**d, low, high, top, inner) + 4:.1f}" text-anchor="end">1e{d}</text>'
        for d in (low, high)
    ]
    parts += polylines(points, "curve")
    if len(values) > 1:
        parts.append(f'<text x="{left}" y="{height - 6}">step 1</text>')
    parts.append(f'<text x="{width - 8}" y="{height - 6}" text-anchor="end">step {len(values)}</text>')
    if diverged_at is not None:
        parts.append(
            f'<text x="{width - 8}" y="{top + 10}" text-anchor="end" fill="#dc2626">non-finite at step {diverged_at}</text>'
        )
    return "\n".join([*parts, "</svg>"])
