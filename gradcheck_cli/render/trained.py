"""The --weights and --versus sections, shared by every renderer (JSON dicts, text lines, tables)."""

from __future__ import annotations

import math
from html import escape
from typing import TYPE_CHECKING

from gradcheck_cli.records.report import Report
from gradcheck_cli.records.trained import CheckpointInfo, Versus
from gradcheck_cli.render.base import fmt_num

if TYPE_CHECKING:
    from rich.console import RenderableType

LISTED = 8


def _names(keys: tuple[str, ...]) -> str:
    shown = ", ".join(keys[:LISTED])
    return shown + (f" (+{len(keys) - LISTED} more)" if len(keys) > LISTED else "")


def checkpoint_lines(info: CheckpointInfo) -> list[str]:
    """One line saying what was loaded and how, then one per kind of key left out."""
    where = f" (under {info.container_key!r})" if info.container_key else ""
    trained = [
        f"step {info.step}" if info.step is not None else "",
        f"epoch {info.epoch}" if info.epoch is not None else "",
    ]
    recorded = ", ".join(t for t in trained if t)
    head = (
        f"weights {info.path} · {info.format}{where} · keys: {info.mapping} · "
        f"{info.loaded}/{info.model_tensors} tensors loaded"
        + (f" · trained to {recorded}" if recorded else "")
        + (" · with optimizer state" if info.optimizer_state else "")
    )
    lines = [head]
    if info.at_init:
        lines.append(f"stayed at init (--weights-partial): {_names(info.at_init)}")
    if info.unexpected:
        lines.append(f"not in the model (skipped): {_names(info.unexpected)}")
    if info.ignored:
        lines.append(f"outside the stripped prefix (not loaded): {_names(info.ignored)}")
    return lines


def _change(now: float, then: float) -> str:
    if not (math.isfinite(now) and math.isfinite(then)) or then == 0 or now == 0:
        return "—"
    return f"{now / then:.2g}x"


def versus_headers(versus: Versus) -> list[str]:
    ref = versus.reference
    return ["layer", "grad norm", f"at {ref}", "grad/weight", f"at {ref}", "weight norm", "change"]


def versus_rows(versus: Versus) -> list[list[str]]:
    rows = []
    for layer in versus.layers:
        rows.append(
            [
                layer.name,
                fmt_num(layer.grad_norm[0]),
                fmt_num(layer.grad_norm[1]),
                fmt_num(layer.grad_weight_ratio[0]),
                fmt_num(layer.grad_weight_ratio[1]),
                fmt_num(layer.weight_norm[0]),
                _change(*layer.weight_norm),
            ]
        )
    return rows


def _fraction(value: float) -> str:
    return f"{value:.0%}" if math.isfinite(value) else "—"


def versus_activation_rows(versus: Versus) -> list[list[str]]:
    return [
        [
            a.name,
            _fraction(a.dead_fraction[0]),
            _fraction(a.dead_fraction[1]),
            _fraction(a.saturated_fraction[0]),
            _fraction(a.saturated_fraction[1]),
        ]
        for a in versus.activations
    ]


def versus_activation_headers(versus: Versus) -> list[str]:
    ref = versus.reference
    return ["activation", "dead", f"at {ref}", "saturated", f"at {ref}"]


def versus_horizon_lines(versus: Versus) -> list[str]:
    """One line per attention site, then per recurrent module (gates, horizon), in both states."""
    gates: dict[str, list[str]] = {}
    for g in versus.gates:
        gates.setdefault(g.module, []).append(
            f"{g.gate} {_fraction(g.saturated_fraction[0])} ({_fraction(g.saturated_fraction[1])})"
        )
    attention = [
        f"{a.name} attention entropy {fmt_num(a.entropy[0])} (at {versus.reference}: {fmt_num(a.entropy[1])}), "
        f"one-key queries {_fraction(a.collapsed_fraction[0])} ({_fraction(a.collapsed_fraction[1])}), "
        f"largest logit {fmt_num(a.max_logit[0])} ({fmt_num(a.max_logit[1])})"
        for a in versus.attention
    ]
    return (
        attention
        + [
            f"{module} saturated gates (at {versus.reference}): {', '.join(parts)}"
            for module, parts in gates.items()
        ]
        + [
            f"{t.module}: gradient horizon {t.horizon[0]} steps (at {versus.reference}: {t.horizon[1]}), "
            f"per-step factor {fmt_num(t.per_step_factor[0])} (at {versus.reference}: {fmt_num(t.per_step_factor[1])})"
            for t in versus.through_time
        ]
    )


def versus_title(versus: Versus) -> str:
    loss = f"loss {fmt_num(versus.loss[0])} (at {versus.reference}: {fmt_num(versus.loss[1])})"
    return f"versus {versus.reference}: the same batches and seed on both states · {loss}"


# --- per-format blocks: each renderer adds these with one call -------------------------------------


def terminal_parts(report: Report, width: int = 100) -> list[RenderableType]:
    from rich.text import Text

    from gradcheck_cli.render.fit import fitted_table

    parts: list[RenderableType] = []
    if report.checkpoint is not None:
        parts.append(Text("\n".join(checkpoint_lines(report.checkpoint)), style="dim"))
    if report.versus is not None:
        versus = report.versus
        table = fitted_table(versus_headers(versus), versus_rows(versus), width)
        parts += [Text(""), Text(versus_title(versus), style="bold"), table]
        if versus.activations:
            headers = versus_activation_headers(versus)
            parts += [Text(""), fitted_table(headers, versus_activation_rows(versus), width)]
        parts += [Text(line) for line in versus_horizon_lines(versus)]
    return parts


def _md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    def row(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return [row(headers), "| " + " | ".join("---" for _ in headers) + " |", *(row(r) for r in rows)]


def markdown_lines(report: Report) -> list[str]:
    lines: list[str] = []
    if report.checkpoint is not None:
        lines += [f"- {line}" for line in checkpoint_lines(report.checkpoint)] + [""]
    if report.versus is not None:
        versus = report.versus
        lines += [
            f"**{versus_title(versus)}**",
            "",
            *_md_table(versus_headers(versus), versus_rows(versus)),
            "",
        ]
        if versus.activations:
            lines += [*_md_table(versus_activation_headers(versus), versus_activation_rows(versus)), ""]
        lines += [f"- {line}" for line in versus_horizon_lines(versus)]
    return lines


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def html_parts(report: Report) -> list[str]:
    parts: list[str] = []
    if report.checkpoint is not None:
        parts.append(
            "".join(f'<p class="meta">{escape(line)}</p>' for line in checkpoint_lines(report.checkpoint))
        )
    if report.versus is not None:
        versus = report.versus
        parts += [
            f"<h2>{escape(versus_title(versus))}</h2>",
            _html_table(versus_headers(versus), versus_rows(versus)),
        ]
        if versus.activations:
            parts.append(_html_table(versus_activation_headers(versus), versus_activation_rows(versus)))
        parts += [f"<p>{escape(line)}</p>" for line in versus_horizon_lines(versus)]
    return parts
