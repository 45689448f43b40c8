"""--format rich: the header, the per-layer table with a log-scale gradient bar, the verdict
(render/verdict.py) and the tried fixes; the pictures are render/pictures.py."""

from __future__ import annotations

import math
from io import StringIO
from pathlib import PurePath
from typing import ClassVar

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from gradcheck_cli.records.findings import LayerStatus, Severity
from gradcheck_cli.records.fixes import Measured, TriedFix
from gradcheck_cli.records.report import LayerRow, Report
from gradcheck_cli.records.stats import LayerStats
from gradcheck_cli.records.text import amount, count, plural
from gradcheck_cli.render.base import fmt_num
from gradcheck_cli.render.escape import clean_report
from gradcheck_cli.render.fit import MIN_NAME, cell_width, middle
from gradcheck_cli.render.headroom import headroom_block
from gradcheck_cli.render.pictures import GradBar, Phrases, through_time_block, training_sparks
from gradcheck_cli.render.precision import terminal_parts as precision_parts
from gradcheck_cli.render.sections import baseline_lines, training_line
from gradcheck_cli.render.trained import terminal_parts
from gradcheck_cli.render.verdict import SEVERITY_STYLE, summary_panel

STATUS_STYLE = {
    LayerStatus.OK: "green",
    LayerStatus.VANISHING: "bold blue",
    LayerStatus.EXPLODING: "bold red",
    LayerStatus.DEAD: "magenta",
    LayerStatus.SATURATED: "yellow",
    LayerStatus.NONFINITE: "bold red",
    LayerStatus.NO_GRAD: "bold red",
    LayerStatus.FROZEN: "dim",
    LayerStatus.GATED: "cyan",
    LayerStatus.NOT_MEASURED: "dim",
}
MAX_ROWS = 60


def header(report: Report) -> Phrases:
    m, r = report.model, report.run
    params = f"{m.parameters:,} {plural('parameter', m.parameters)}"
    params += "" if m.trainable == m.parameters else f" ({m.trainable:,} trainable)"
    first = [
        (f"gradcheck {report.target}", "bold cyan"),
        (m.class_name, ""),
        (params, ""),
        (f"{m.device} {m.dtype}", ""),
    ]
    inputs = ", ".join(r.inputs)
    if r.input_origin and r.input_origin not in r.inputs:
        inputs += f" ({r.input_origin})"
    second = [
        (f"inputs {inputs}", "dim"),
        (f"loss {r.loss}" + (f" ({r.loss_reason})" if r.loss_reason else ""), "dim"),
        *([(f"{m.dtype}: {m.dtype_reason}", "dim")] if m.dtype_reason else []),
        (count(r.batches, "batch"), "dim"),
        (f"seed {r.seed}", "dim"),
    ]
    if r.steps:
        second.append((f"{count(r.steps, 'training step')} first", "dim"))
    second.append((f"{r.seconds:.2f}s", "dim"))
    return Phrases([first, second])


def _output_text(stats: LayerStats) -> str:
    """Output size per sample: channels x H x W for a convolution, else elements."""
    if not stats.width:
        return "—"
    if stats.spatial:
        channels = stats.width // max(1, math.prod(stats.spatial))
        return "x".join(str(v) for v in (channels, *stats.spatial))
    return str(stats.width)


def _decades(rows: tuple[LayerRow, ...]) -> tuple[float, float]:
    norms = [row.stats.act_grad_norm for row in rows if row.stats.act_grad_norm > 0]
    top = max(norms) if norms else 1.0
    low = min(norms) if norms else 1.0
    return top, (max(3.0, math.ceil(math.log10(top / low)) + 1) if norms else 3.0)


BAR_WIDTH = 16
"""The ∇output bar's width; it narrows (down to MIN_BAR) before a name is shortened."""
MIN_BAR = 7


def layer_table(report: Report, columns: tuple[str, ...] = (), width: int = 100) -> Table:
    rows = report.layers
    top, decades = _decades(rows)
    severity = layer_severity(report)
    shown = rows if len(rows) <= MAX_ROWS else rows[: MAX_ROWS // 2] + rows[-MAX_ROWS // 2 :]
    texts = [_row_texts(row, columns) for row in shown]
    fixed = (
        {key: cell_width(key, [t[key] for t in texts]) for key in texts[0] if key != "layer"} if texts else {}
    )
    name_width, bar = _name_and_bar(rows, fixed, width)
    table = Table(box=None, pad_edge=False, header_style="bold", expand=False)
    if "order" in fixed:
        table.add_column("order", justify="right", style="dim", width=fixed["order"])
    table.add_column("layer", no_wrap=True, width=name_width)
    for key in ("type", "output", "params"):
        if key in fixed:
            table.add_column(
                key, justify="left" if key == "type" else "right", no_wrap=True, width=fixed[key]
            )
    table.add_column("∇output (log)" if bar >= len("∇output (log)") else "∇output", no_wrap=True, width=bar)
    for key in ("∇out", "grad/w", "status"):
        table.add_column(
            key, justify="left" if key == "status" else "right", no_wrap=True, width=fixed.get(key)
        )
    for i, (row, text) in enumerate(zip(shown, texts, strict=True)):
        if len(rows) > MAX_ROWS and i == MAX_ROWS // 2:
            gap: list[RenderableType] = [""] * len(table.columns)
            gap[1 if "order" in columns else 0] = middle(
                f"… {count(len(rows) - MAX_ROWS, 'more layer')}", name_width
            )
            table.add_row(*gap)
        text["layer"] = middle(text["layer"], name_width)
        table.add_row(*_row_cells(row, text, severity, (top, decades), bar))
    return table


def _row_texts(row: LayerRow, columns: tuple[str, ...]) -> dict[str, str]:
    s = row.stats
    text = {"order": str(s.index)} if "order" in columns else {}
    text |= {"layer": s.name, "type": s.type}
    if "output" in columns:
        text["output"] = _output_text(s)
    if "params" in columns:
        text["params"] = f"{s.parameters:,}"
    return text | {
        "∇out": fmt_num(s.act_grad_norm),
        "grad/w": fmt_num(s.grad_weight_ratio),
        "status": row.status.value,
    }


def _name_and_bar(rows: tuple[LayerRow, ...], fixed: dict[str, int], width: int) -> tuple[int, int]:
    """The name column's width and the bar's: numbers and types whole, the bar narrowing (to
    MIN_BAR) before a name is shortened, names never below MIN_NAME."""
    longest = max((len(row.stats.name) for row in rows), default=5)
    others = sum(fixed.values()) + 2 * (len(fixed) + 1)
    room = width - others
    bar = max(MIN_BAR, min(BAR_WIDTH, room - longest))
    return min(max(longest, len("layer")), max(MIN_NAME, room - bar)), bar


def _row_cells(
    row: LayerRow, text: dict[str, str], severity: dict[str, Severity], scale: tuple[float, float], bar: int
) -> list[RenderableType]:
    s = row.stats
    worst = severity.get(s.name)
    style = SEVERITY_STYLE[worst] if worst is not None and row.status is not LayerStatus.OK else ""
    name_cells = [Text(text[k]) for k in ("type", "output", "params") if k in text]
    cells: list[RenderableType] = [text["order"]] if "order" in text else []
    cells += [Text(text["layer"]), *name_cells]  # Text, not markup: "[bold]x" prints as it is
    cells += [
        GradBar(s.act_grad_norm, *scale, width=bar, style=style or "cyan")
        if s.hooked
        else Text("not measured"[:bar], style="dim"),
        text["∇out"],
        text["grad/w"],
        Text(text["status"], style=style or STATUS_STYLE[row.status]),
    ]
    return cells


def table_legend(report: Report) -> Text:
    _, decades = _decades(report.layers)
    return Text(
        f"∇output: norm of the loss gradient at each layer's output; bar on a log scale over "
        f"{amount(decades, 'decade')}. grad/w: gradient norm / weight norm.",
        style="dim",
    )


def layer_severity(report: Report) -> dict[str, Severity]:
    """The worst severity of the findings that name each layer (colours follow severity)."""
    out: dict[str, Severity] = {}
    for finding in report.findings:
        for name in finding.layers:
            if name not in out or finding.severity.rank > out[name].rank:
                out[name] = finding.severity
    return out


def _ratio_text(measured: Measured | None) -> str:
    ratio = measured.ratio if measured is not None else None
    return fmt_num(ratio) if isinstance(ratio, (int, float)) else "-"


def _not_cleared(tried: TriedFix) -> str:
    if tried.applied:
        return "none"
    return f"advice: max_norm {tried.max_norm:g}" if tried.max_norm is not None else "not applied"


def fixes_block(fixes: tuple[TriedFix, ...]) -> RenderableType:
    """The "tried fixes" table (--try-fixes)."""
    title = "tried fixes (each on a copy of the model, same inputs and seed)"
    if not fixes:
        body: RenderableType = Text("tried nothing: no error findings")
        return Panel(body, title=title, title_align="left", border_style="dim")
    table = Table(box=None, pad_edge=False, header_style="bold", expand=False)
    table.add_column("fix", no_wrap=True)
    table.add_column("where", overflow="ellipsis", no_wrap=True, max_width=18)
    table.add_column("ratio before → after", no_wrap=True)
    table.add_column("cleared", no_wrap=True)
    table.add_column("Δparams", justify="right", no_wrap=True, min_width=7)
    notes = Text()
    for tried in fixes:
        cleared = ", ".join(tried.cleared)
        table.add_row(
            Text(tried.fix, style="bold green" if cleared else ("" if tried.applied else "dim")),
            Text(PurePath(tried.where or "").name),  # file:line; the notes say which modules
            f"{_ratio_text(tried.before)} → {_ratio_text(tried.after)}",
            Text(cleared or _not_cleared(tried)),
            f"{tried.parameters_delta:+,}",
        )
        notes.append(f"  {tried.fix}: ", style="bold")
        notes.append(f"{tried.note}\n", style="" if tried.applied else "dim")
    notes.rstrip()
    return Panel(Group(table, Text(""), notes), title=title, title_align="left", border_style="dim")


def report_renderables(
    report: Report, columns: tuple[str, ...] = (), width: int = 100
) -> list[RenderableType]:
    parts: list[RenderableType] = [
        header(report),
        *terminal_parts(report, width),
        Text(""),
        layer_table(report, columns, width),
        table_legend(report),
    ]
    parts.append(Text(""))
    if report.through_time:
        parts.append(through_time_block(report.through_time))
    parts += precision_parts(report.precision, width)
    parts.append(summary_panel(report))
    if report.training is not None:
        parts.append(Text(f"training: {training_line(report.training)}", style="dim"))
        parts.append(training_sparks(report.training))
    if report.lr_headroom is not None:
        parts.append(headroom_block(report.lr_headroom))
    if report.baseline is not None:
        lines = baseline_lines(report.baseline)
        parts.append(Text("baseline: " + "\n  ".join(lines), style="dim"))
    if report.fixes is not None:
        parts.append(fixes_block(report.fixes))
    return parts


class TerminalRenderer:
    format: ClassVar[str] = "rich"

    def __init__(self, width: int = 100, color: bool = False, columns: tuple[str, ...] = ()) -> None:
        self.width, self.color, self.columns = width, color, columns

    def render(self, report: Report) -> str:
        console = Console(
            file=StringIO(),
            width=self.width,
            force_terminal=self.color,
            color_system="auto" if self.color else None,
            no_color=not self.color,
            highlight=False,
            emoji=False,
        )
        for part in report_renderables(clean_report(report), self.columns, self.width):
            console.print(part)
        out = console.file.getvalue()  # type: ignore[attr-defined]
        return str(out)
