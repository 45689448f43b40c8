"""`gradcheck report`: a training run's history as text (terminal and Markdown), sparklines per layer.

The HTML page with small multiples is in render/history_html.py; all three read a RunReport.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from gradcheck_cli.judge.run_verdict import RunReport, loss_series, unit_rows
from gradcheck_cli.records.formats import Format
from gradcheck_cli.render.base import fmt_num
from gradcheck_cli.render.escape import clean_report, md_code, md_text
from gradcheck_cli.render.json import _clean

BLOCKS = "▁▂▃▄▅▆▇█"
NONFINITE = "!"


def sparkline(
    values: Sequence[float],
    width: int = 24,
    log: bool = True,
    bad: Sequence[bool] | None = None,
    bounds: tuple[float, float] | None = None,
) -> str:
    """One character per bucket of steps, height by mean log10 (or linear) value.

    `!` marks a bucket with a NaN/inf value or a step flagged in `bad`, `·` one whose values are
    all zero on a log scale, and a blank one where the series has no value (layer absent).
    `bounds` fixes the scale (a fraction is drawn on 0..1: always 0 is the lowest block, not a
    half-height line that reads as 50%)."""
    flags = list(bad) if bad is not None else [False] * len(values)
    levels = [
        _level([values[i] for i in group], any(flags[i] for i in group), log)
        for group in _groups(len(values), width)
    ]
    finite = [v for v in levels if isinstance(v, float) and math.isfinite(v)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 0.0)
    if bounds is not None:
        low, high = bounds
    return "".join(_char(level, low, high) for level in levels)


def _groups(count: int, width: int) -> list[range]:
    if count <= width:
        return [range(i, i + 1) for i in range(count)]
    edges = [round(i * count / width) for i in range(width + 1)]
    return [range(a, b) for a, b in zip(edges, edges[1:], strict=False) if b > a]


def _level(bucket: Sequence[float], flagged: bool, log: bool) -> float | str | None:
    if flagged or any(math.isinf(v) for v in bucket):
        return NONFINITE
    present = [v for v in bucket if not math.isnan(v)]
    usable = [math.log10(v) if log else v for v in present if v > 0 or not log]
    if usable:
        return sum(usable) / len(usable)
    return "·" if present else None


def _char(level: float | str | None, low: float, high: float) -> str:
    if level is None:
        return " "
    if isinstance(level, str):
        return level
    if high - low < 1e-12:
        return BLOCKS[3]
    return BLOCKS[max(0, min(7, int((level - low) / (high - low) * 8)))]


def layer_spark(report: RunReport, name: str, width: int = 24) -> str:
    norms = report.history.layer_series(name, "grad_norm")
    bad = [n > 0 for n in report.history.layer_series(name, "nonfinite")]
    return sparkline(norms, width, bad=bad)


def abstained_text(report: RunReport) -> str:
    """Why a layer shows no slope: the trend needs finite values, enough steps and a good fit."""
    reasons: dict[str, list[str]] = {}
    for name, why in report.abstained.items():
        reasons.setdefault(why, []).append(name)
    parts = [
        f"{', '.join(names[:3])}{' ...' if len(names) > 3 else ''}: {why}" for why, names in reasons.items()
    ]
    return "no slope (—) for " + "; ".join(parts)


def slope_text(report: RunReport, layer: str) -> str:
    fit = report.fits.get(layer)
    return "—" if fit is None else f"{fit.orders_per_1000_steps:+.2f}"


def _first_last(values: Sequence[float]) -> tuple[str, str]:
    return (fmt_num(values[0]), fmt_num(values[-1])) if values else ("—", "—")


def _title(report: RunReport) -> str:
    steps = report.history.step_numbers
    model = f"{report.log.model}, " if report.log.model else ""
    return f"{report.log.path}: {model}{len(steps)} measured steps ({steps[0]}..{steps[-1]})"


# -- terminal ------------------------------------------------------------------------------------
class RunTerminalRenderer:
    def __init__(self, width: int = 100, color: bool = False) -> None:
        self.width, self.color = width, color

    def render(self, report: RunReport) -> str:
        from rich.console import Console

        report = clean_report(report)  # names and messages from the file: no escape sequence
        out = io.StringIO()
        console = Console(
            file=out, width=self.width, color_system="standard" if self.color else None, highlight=False
        )
        for renderable in self.renderables(report):
            console.print(renderable)
        return out.getvalue()

    def renderables(self, report: RunReport) -> list[Any]:
        from rich.text import Text

        parts: list[Any] = [Text(_title(report), style="bold"), self._layer_table(report)]
        if report.abstained:
            parts.append(Text(abstained_text(report), style="dim"))
        if unit_rows(report):
            parts.append(self._unit_table(report))
        loss = loss_series(report)
        if any(not math.isnan(v) for v in loss):
            first, last = _first_last(loss)
            parts.append(Text(f"loss  {sparkline(loss, 24, log=False)}  {first} -> {last}"))
        parts.extend(self._findings(report))
        return parts

    def _layer_table(self, report: RunReport) -> Any:
        from rich.table import Table

        table = Table(
            title="gradient norm per layer (log scale, ! = NaN/inf)", title_justify="left", box=None
        )
        for column in ("layer", "grad norm over steps", "first", "last", "orders/1k steps", "grad/w last"):
            table.add_column(
                column, justify="right" if column not in ("layer", "grad norm over steps") else "left"
            )
        for name in report.history.layer_names():
            norms = report.history.layer_series(name, "grad_norm")
            ratio = report.history.layer_series(name, "grad_weight_ratio")
            first, last = _first_last(norms)
            table.add_row(
                name, layer_spark(report, name), first, last, slope_text(report, name), fmt_num(ratio[-1])
            )
        return table

    def _unit_table(self, report: RunReport) -> Any:
        from rich.table import Table

        table = Table(title="activations (fraction of units, linear scale)", title_justify="left", box=None)
        for column in ("activation", "after", "measure", "over steps", "first", "last"):
            table.add_column(column)
        for name, after, measure, series in unit_rows(report):
            first, last = _first_last(series)
            table.add_row(
                name,
                after,
                measure.split("_")[0],
                sparkline(series, log=False, bounds=(0.0, 1.0)),
                first,
                last,
            )
        return table

    def _findings(self, report: RunReport) -> list[Any]:
        from rich.text import Text

        colour = {"error": "red", "warning": "yellow", "info": "cyan"}
        lines: list[Any] = [Text("trend findings over the whole run:", style="bold")]
        if not report.trends:
            lines.append(Text("  none"))
        for f in report.trends:
            lines.append(Text(f"  {f.severity.value} {f.id}: {f.message}", style=colour[f.severity.value]))
        if report.log.logged:
            lines.append(Text("findings the monitor logged (first step each appeared):", style="bold"))
        for step, doc in report.log.logged:
            sev = str(doc.get("severity"))
            lines.append(
                Text(f"  step {step}: {sev} {doc.get('id')}: {doc.get('message')}", style=colour.get(sev, ""))
            )
        return lines


# -- markdown ------------------------------------------------------------------------------------
def _md(text: object) -> str:
    """A table cell or list item: `|` cannot end the cell, a newline cannot end the row."""
    return str(text).replace("|", "\\|").replace("\n", " ")


class RunMarkdownRenderer:
    def render(self, report: RunReport) -> str:
        report = clean_report(report)  # as analyze's Markdown: code spans and escaped text only
        lines = [f"## gradcheck report: {_md(md_text(_title(report)))}", ""]
        lines += ["| layer | grad norm over steps (log) | first | last | orders/1k steps | grad/w last |"]
        lines += ["| --- | --- | --: | --: | --: | --: |"]
        for name in report.history.layer_names():
            norms = report.history.layer_series(name, "grad_norm")
            ratio = report.history.layer_series(name, "grad_weight_ratio")
            first, last = _first_last(norms)
            row = [
                _md(md_code(name)),
                f"`{layer_spark(report, name)}`",
                first,
                last,
                slope_text(report, name),
                fmt_num(ratio[-1]),
            ]
            lines.append("| " + " | ".join(row) + " |")
        if report.abstained:
            lines += ["", _md(abstained_text(report))]
        if unit_rows(report):
            lines += [
                "",
                "| activation | after | measure | over steps | first | last |",
                "| --- | --- | --- | --- | --: | --: |",
            ]
            for name, after, measure, series in unit_rows(report):
                first, last = _first_last(series)
                cells = [
                    _md(md_code(name)),
                    _md(md_code(after)),
                    measure,
                    f"`{sparkline(series, log=False, bounds=(0.0, 1.0))}`",
                    first,
                    last,
                ]
                lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "### Trend findings", ""]
        lines += [
            f"- **{md_text(f.severity.value)}** {md_code(f.id)}: {_md(md_text(f.message))}"
            for f in report.trends
        ] or ["None."]
        if report.log.logged:
            lines += ["", "### Findings the monitor logged", ""]
            lines += [
                f"- step {s}: **{_md(md_text(str(d.get('severity'))))}** {_md(md_code(str(d.get('id'))))}: "
                f"{_md(md_text(str(d.get('message'))))}"
                for s, d in report.log.logged
            ]
        return "\n".join(lines) + "\n"


# -- json ----------------------------------------------------------------------------------------
class RunJsonRenderer:
    def render(self, report: RunReport) -> str:
        from gradcheck_cli.render.json import _finding

        doc = {
            "schema": "gradcheck.run-report/1",
            "file": report.log.path,
            "model": report.log.model,
            "steps": list(report.history.step_numbers),
            "layers": [
                {
                    "name": name,
                    "grad_norm": list(report.history.layer_series(name, "grad_norm")),
                    "orders_per_1000_steps": None
                    if (fit := report.fits.get(name)) is None
                    else fit.orders_per_1000_steps,
                    "no_slope_because": report.abstained.get(name),
                }
                for name in report.history.layer_names()
            ],
            "trend_findings": [_finding(f) for f in report.trends],
            "logged_findings": [{"step": s, **d} for s, d in report.log.logged],
        }
        return json.dumps(_clean(doc), indent=2, allow_nan=False) + "\n"


def _run_html(width: int, color: bool) -> Any:
    from gradcheck_cli.render.history_html import RunHtmlRenderer

    return RunHtmlRenderer()


RUN_RENDERERS: dict[Format, Callable[[int, bool], Any]] = {
    Format.RICH: lambda width, color: RunTerminalRenderer(width=width, color=color),
    Format.MARKDOWN: lambda width, color: RunMarkdownRenderer(),
    Format.HTML: _run_html,
    Format.JSON: lambda width, color: RunJsonRenderer(),
}
"""The renderer of a run history per format (`gradcheck report`): keyed by records.formats.RUN_FORMATS."""


def get_run_renderer(fmt: Format | str, *, width: int = 100, color: bool = False) -> Any:
    return RUN_RENDERERS[Format(fmt)](width, color)
