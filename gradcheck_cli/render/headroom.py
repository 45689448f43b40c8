"""--lr-headroom in every format: the verdict line, one row per multiplier, and the JSON section."""

from __future__ import annotations

import math
from html import escape
from typing import Any

from gradcheck_cli.records.headroom import HeadroomRun, LrHeadroom, Series, Trip
from gradcheck_cli.render.base import fmt_num

HEADROOM_HEADERS = ("multiplier", "lr", "loss first → last", "verdict", "largest growth")

WORDS = {
    "loss": "the loss diverged or stalled",
    "update_ratio": "the update/weight ratio grew super-linearly",
    "attention_max_logit": "the largest attention logit grew super-linearly",
    "attention_entropy": "the attention entropy collapsed super-linearly",
    "logit_rms": "the output-logit RMS grew super-linearly",
    "log_partition": "the log-partition (logsumexp of the logits) moved super-linearly",
}


def headroom_line(h: LrHeadroom) -> str:
    """The verdict: the smallest multiplier that broke, what broke first and where."""
    runs = f"{h.steps} steps on one batch with {h.optimizer} at lr {h.lr:g} times {_list(h.multipliers)}"
    if h.limit is None:
        return f"no multiplier up to {h.multipliers[-1]:g}x broke ({runs})"
    where = "" if h.layer in (None, "loss") else f" at {h.layer}"
    return (
        f"breaks at {h.limit:g}x (lr {h.lr * h.limit:g}): {WORDS.get(h.first_instrument or '', '?')}"
        f"{where}, step {h.step} ({runs})"
    )


def _list(values: tuple[float, ...]) -> str:
    return ", ".join(f"{v:g}" for v in values)


def trip_text(trip: Trip) -> str:
    if trip.how == "stalled":
        return f"loss stalled: kept {trip.excursion:.0%} of the reference's progress by step {trip.step}"
    if trip.instrument == "loss":
        ratio = "non-finite" if math.isinf(trip.excursion) else f"{fmt_num(trip.excursion)}x the first"
        return f"loss diverged at step {trip.step} ({ratio})"
    return (
        f"{trip.instrument} at {trip.layer}, step {trip.step} "
        f"({fmt_num(trip.excursion)} > {fmt_num(trip.allowed)} allowed)"
    )


def headroom_rows(h: LrHeadroom) -> list[tuple[str, ...]]:
    """One row per multiplier, in HEADROOM_HEADERS order."""
    rows: list[tuple[str, ...]] = []
    for run in h.runs:
        loss = f"{fmt_num(run.loss[0])} → {fmt_num(run.loss[-1])}" if run.loss else "-"
        if run.nonfinite_step is not None:
            loss += f" (non-finite at step {run.nonfinite_step})"
        verdict = "broke: " + trip_text(run.trips[0]) if run.trips else "ok"
        peaks = "; ".join(
            f"{p.instrument} {fmt_num(p.excursion)}" for p in run.peaks if p.instrument != "update_ratio"
        )
        rows.append((f"{run.multiplier:g}x", f"{run.lr:g}", loss, verdict, peaks or "-"))
    return rows


def _per_step(series: tuple[Series, ...], instrument: str, pick: Any = max) -> list[float] | None:
    """One instrument's value per step over all its places (the largest, or the smallest)."""
    chosen = [s.values for s in series if s.instrument == instrument]
    if not chosen:
        return None
    length = max(len(v) for v in chosen)
    out = []
    for t in range(length):
        finite = [v[t] for v in chosen if t < len(v) and math.isfinite(v[t])]
        out.append(pick(finite) if finite else math.nan)
    return out


def _run_section(run: HeadroomRun) -> dict[str, Any]:
    per_step: dict[str, Any] = {}
    for instrument, pick in (
        ("update_ratio", max),
        ("attention_max_logit", max),
        ("attention_entropy", min),
        ("logit_rms", max),
        ("log_partition", max),
    ):
        values = _per_step(run.series, instrument, pick)
        if values is not None:
            per_step[instrument] = values
    tripped = {(t.instrument, t.layer) for t in run.trips}
    return {
        "multiplier": run.multiplier,
        "lr": run.lr,
        "broke": run.broke,
        "loss": list(run.loss),
        "nonfinite_step": run.nonfinite_step,
        "trips": [
            {
                "instrument": t.instrument,
                "layer": t.layer,
                "step": t.step,
                "excursion": t.excursion,
                "allowed": t.allowed,
            }
            for t in run.trips
        ],
        "peaks": {p.instrument: {"layer": p.layer, "excursion": p.excursion} for p in run.peaks},
        "per_step": per_step,
        "tripped_series": [
            {"instrument": s.instrument, "layer": s.layer, "values": list(s.values)}
            for s in run.series
            if (s.instrument, s.layer) in tripped
        ],
    }


def headroom_section(h: LrHeadroom) -> dict[str, Any]:
    """The JSON `lr_headroom` section (NaN and infinity become null where the caller cleans it)."""
    return {
        "lr": h.lr,
        "optimizer": h.optimizer,
        "optimizer_source": h.optimizer_source,
        "steps": h.steps,
        "multipliers": list(h.multipliers),
        "limit": h.limit,
        "first_instrument": h.first_instrument,
        "layer": h.layer,
        "step": h.step,
        "criteria": dict(h.criteria),
        "runs": [_run_section(run) for run in h.runs],
    }


def headroom_block(h: LrHeadroom) -> Any:
    """The terminal's block: the verdict and one line per multiplier."""
    from rich.text import Text

    text = Text(f"lr headroom: {headroom_line(h)}", style="dim")
    for row in headroom_rows(h):
        text.append(f"\n  {row[0]:>5} lr {row[1]:<9} loss {row[2]}: {row[3]}", style="dim")
    return text


def headroom_html(h: LrHeadroom) -> str:
    head = "".join(f"<th>{escape(x)}</th>" for x in HEADROOM_HEADERS)
    rows = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in headroom_rows(h)
    )
    table = f"<table><tr>{head}</tr>{rows}</table>"
    return f"<p>{escape(headroom_line(h))}</p>{table}{headroom_charts(h)}"


def headroom_charts(h: LrHeadroom, size: tuple[int, int] = (210, 130)) -> str:
    """Small multiples, one row per instrument (the loss, the largest attention logit, the
    output-logit RMS), one chart per multiplier, on log axes: the run that broke stands out."""
    from gradcheck_cli.render.charts import _small

    rows = []
    for instrument, title in (
        ("loss", "loss"),
        ("attention_max_logit", "max attention logit"),
        ("logit_rms", "output-logit RMS"),
    ):
        charts = []
        for run in h.runs:
            values = list(run.loss) if instrument == "loss" else _per_step(run.series, instrument)
            if values:
                state = "broke" if run.trips else "ok"
                charts.append(
                    _small(f"{title} at {run.multiplier:g}x ({state})", values, size, run.nonfinite_step)
                )
        if charts:
            rows.append(f'<div class="multiples">{"".join(charts)}</div>')
    return "".join(rows)
