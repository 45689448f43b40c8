"""The optional sections later stages add (--steps, --baseline, --try-fixes) as plain text rows,
shared by the Markdown and HTML renderers (each escapes and lays them out its own way)."""

from __future__ import annotations

import math

from gradcheck_cli.records.comparison import BaselineComparison
from gradcheck_cli.records.fixes import Measured, TriedFix
from gradcheck_cli.records.stats import TrainingHistory
from gradcheck_cli.records.text import amount, count
from gradcheck_cli.render.base import fmt_num

FIX_HEADERS = ("fix", "where", "ratio before → after", "cleared", "Δparams", "note")


def training_line(history: TrainingHistory) -> str:
    """--steps: how the loss moved over the training steps taken before measuring."""
    steps = len(history.loss)
    loss = f"loss {fmt_num(history.loss[0])} → {fmt_num(history.loss[-1])}" if history.loss else "no loss"
    scheduler = f", {history.scheduler}" if history.scheduler else ""
    return (
        f"trained {count(steps, 'step')} by {history.loop} with {history.optimizer} "
        f"(lr {history.lr:g}{scheduler}): {loss}"
    )


def baseline_lines(baseline: BaselineComparison) -> list[str]:
    """--baseline: what the comparison with the saved report found."""
    c = baseline.comparison
    verdict = "regressed" if c.regressed else "no regression"
    lines = [
        f"compared with {baseline.file} (limit {amount(c.orders_limit, 'order of magnitude')}): {verdict}"
    ]
    if c.new_findings:
        lines.append(f"new findings: {', '.join(c.new_findings)}")
    if c.resolved_findings:
        lines.append(f"resolved findings: {', '.join(c.resolved_findings)}")
    for change in c.regressed_layers:
        moved = "fell to zero" if change.orders is not None and math.isinf(change.orders) else None
        lines.append(f"{change.name}: gradient ratio {moved or f'{change.orders:+.1f} orders of magnitude'}")
    return lines


def _ratio(measured: Measured | None) -> str:
    ratio = measured.ratio if measured is not None else None
    return fmt_num(ratio) if ratio is not None else "-"


def fix_rows(fixes: tuple[TriedFix, ...]) -> list[tuple[str, ...]]:
    """--try-fixes: one row per fix tried, in FIX_HEADERS order."""
    rows: list[tuple[str, ...]] = []
    for tried in fixes:
        advice = f"advice: max_norm {tried.max_norm:g}" if tried.max_norm is not None else "not applied"
        cleared = ", ".join(tried.cleared) or ("none" if tried.applied else advice)
        before_after = f"{_ratio(tried.before)} → {_ratio(tried.after)}"
        delta = f"{tried.parameters_delta:+,}"
        rows.append((tried.fix, tried.where or "", before_after, cleared, delta, tried.note))
    return rows
