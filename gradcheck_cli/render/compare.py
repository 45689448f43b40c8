"""`gradcheck compare old.json new.json`: the baseline comparison as a table."""

from __future__ import annotations

import math
from io import StringIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from gradcheck_cli.records.comparison import Comparison, LayerChange
from gradcheck_cli.records.text import amount
from gradcheck_cli.render.base import fmt_num
from gradcheck_cli.render.escape import visible
from gradcheck_cli.render.fit import fitted_table


def _orders_cell(change: LayerChange) -> Text:
    if change.orders is None:
        return Text("—", style="dim")
    if math.isinf(change.orders):
        return Text("→ 0", style="bold red")
    return Text(f"{change.orders:+.2f}", style="bold red" if change.regressed else "")


def comparison_table(comparison: Comparison, width: int = 100) -> Table:
    """Names shortened in the middle to fit `width`; numbers and verdicts always whole."""
    rows: list[list[str | Text]] = []
    for change in comparison.layers:
        status = (
            change.new_status
            if change.old_status == change.new_status
            else f"{change.old_status} → {change.new_status}"
        )
        rows.append(
            [
                visible(change.name),  # names come from the report files: never markup
                fmt_num(change.old_ratio) if change.old_ratio is not None else "—",
                fmt_num(change.new_ratio) if change.new_ratio is not None else "—",
                _orders_cell(change),
                Text(visible(status)),
                Text("REGRESSED", style="bold red") if change.regressed else Text("ok", style="green"),
            ]
        )
    headers = ["layer", "old grad/w", "new grad/w", "Δ orders", "status", "verdict"]
    return fitted_table(headers, rows, width, boxed=False, left=(4, 5))


def _summary_lines(comparison: Comparison) -> list[str]:
    lines = []
    for label, items in (
        ("new findings", comparison.new_findings),
        ("resolved findings", comparison.resolved_findings),
        ("unchanged findings", comparison.kept_findings),
        ("layers only in new", comparison.added_layers),
        ("layers only in old", comparison.removed_layers),
    ):
        if items:
            lines.append(f"{label}: {', '.join(items)}")
    verdict = "REGRESSED" if comparison.regressed else "no regression"
    lines.append(
        f"{verdict} (limit: a ratio falling by more than {amount(comparison.orders_limit, 'order of magnitude')})"
    )
    return lines


def render_comparison(comparison: Comparison, width: int = 100, color: bool = False) -> str:
    console = Console(
        file=StringIO(),
        width=width,
        force_terminal=color,
        color_system="auto" if color else None,
        no_color=not color,
    )
    console.print(comparison_table(comparison, width))
    for line in _summary_lines(comparison):
        console.print(Text(visible(line)), highlight=False)
    return str(console.file.getvalue())  # type: ignore[attr-defined]


def render_comparisons(
    comparisons: list[tuple[str, Comparison]], unmatched: list[str], width: int = 100, color: bool = False
) -> str:
    """One comparison, or one per target with the target named above it."""
    if len(comparisons) == 1 and not unmatched:
        return render_comparison(comparisons[0][1], width, color)
    parts = [f"target {name}\n{render_comparison(c, width, color)}" for name, c in comparisons]
    if unmatched:
        parts.append(f"only in one of the files (not compared): {', '.join(unmatched)}\n")
    return "\n".join(parts)
