"""--precision in every format: the JSON `precision` section, and one table per number format
(shares out of range, measured errors, verdict) with its loss-scale line for the terminal,
Markdown and HTML."""

from __future__ import annotations

import math
from html import escape
from typing import TYPE_CHECKING, Any

from gradcheck_cli.records.precision import FormatHeadroom, FormatLayer, LossScale, PrecisionHeadroom
from gradcheck_cli.render.base import fmt_num

if TYPE_CHECKING:
    from rich.console import RenderableType

HEADERS = ("layer", "act under/over", "grad under/over", "out err", "grad err (scaled)", "verdict")
"""Shares of elements out of the format's range (gradient: the worse of output and parameter
gradients), the relative error of the layer run in the format, of its gradients rounded through
it (unscaled, and at the suggested loss scale), and the verdict."""


def _num(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _layer(layer: FormatLayer) -> dict[str, Any]:
    return {
        "name": layer.name,
        "activation_underflow": layer.activation_underflow,
        "activation_overflow": layer.activation_overflow,
        "grad_underflow": layer.grad_underflow,
        "grad_overflow": layer.grad_overflow,
        "weight_grad_underflow": layer.weight_grad_underflow,
        "weight_grad_overflow": layer.weight_grad_overflow,
        "activation_to_zero": layer.activation_to_zero,
        "grad_to_zero": layer.grad_to_zero,
        "verdict": layer.verdict,
        "cause": layer.cause or None,
        "reason": layer.reason,
        "confirmed_error": _num(layer.confirmed_error),
        "confirmed_nonfinite": layer.confirmed_nonfinite,
        "grad_error": _num(layer.grad_error),
        "grad_error_scaled": _num(layer.grad_error_scaled),
    }


def loss_scale_section(scale: LossScale) -> dict[str, Any]:
    return {
        "min": _num(scale.min),
        "max": _num(scale.max),
        "suggested": scale.suggested,
        "fits": scale.fits,
        "max_grad": scale.max_grad,
        "small_grad": scale.small_grad,
    }


def precision_section(precision: PrecisionHeadroom) -> dict[str, Any]:
    """The JSON `precision` section: `formats[]` with `format`, `layers[]` and `loss_scale`."""
    return {
        "elements": precision.elements,
        "formats": [
            {
                "format": f.format,
                "method": f.method,
                "tolerance": f.tolerance,
                "loss_scale": loss_scale_section(f.loss_scale),
                "layers": [_layer(layer) for layer in f.layers],
            }
            for f in precision.formats
        ],
    }


def _share(value: float) -> str:
    if value == 0 or value == 1:
        return f"{value:.0%}"
    return f"{value:.1%}" if value >= 0.001 else "<0.1%"


def rows(headroom: FormatHeadroom) -> list[tuple[str, ...]]:
    """One row per layer, in HEADERS order."""
    return [
        (
            layer.name,
            f"{_share(layer.activation_underflow)}/{_share(layer.activation_overflow)}",
            f"{_share(max(layer.grad_underflow, layer.weight_grad_underflow))}/"
            f"{_share(max(layer.grad_overflow, layer.weight_grad_overflow))}",
            fmt_num(layer.confirmed_error),
            f"{fmt_num(layer.grad_error)} ({fmt_num(layer.grad_error_scaled)})",
            layer.verdict,
        )
        for layer in headroom.layers
    ]


def title(headroom: FormatHeadroom) -> str:
    counts = {
        v: sum(1 for layer in headroom.layers if layer.verdict == v)
        for v in ("needs-scaling", "keep-higher-precision")
    }
    return (
        f"{headroom.format}: {counts['keep-higher-precision']} to keep in higher precision, "
        f"{counts['needs-scaling']} needing a loss scale, of {len(headroom.layers)} layers "
        f"(tolerance {headroom.tolerance:.3g})"
    )


def scale_line(headroom: FormatHeadroom) -> str:
    s = headroom.loss_scale
    if s.max_grad == 0:
        return "loss scale: no nonzero gradient measured"
    fits = "" if s.fits else " (empty: no single scale keeps both ends)"
    need = "no scaling needed" if s.suggested == 1 else f"suggested {s.suggested:g}"
    return (
        f"loss scale range {fmt_num(s.min)} .. {fmt_num(s.max)}{fits}: {need} "
        f"(largest |grad| {fmt_num(s.max_grad)}, 1% of nonzero grads below {fmt_num(s.small_grad * 2)})"
    )


def terminal_parts(precision: PrecisionHeadroom | None, width: int) -> list[RenderableType]:
    if precision is None:
        return []
    from rich.text import Text

    from gradcheck_cli.render.fit import fitted_table

    parts: list[RenderableType] = []
    for headroom in precision.formats:
        parts += [
            Text(title(headroom), style="bold"),
            fitted_table(HEADERS, rows(headroom), width, left=(5,)),
        ]
        parts += [Text(f"{scale_line(headroom)}\n{headroom.method}", style="dim"), Text("")]
    return parts


def markdown_lines(precision: PrecisionHeadroom | None) -> list[str]:
    from gradcheck_cli.render.escape import md_code, md_text

    if precision is None:
        return []
    lines = [f"**Number-format headroom** ({precision.elements:,} elements measured)", ""]
    for headroom in precision.formats:
        table = [
            "| " + " | ".join(HEADERS) + " |",
            "| --- |" + " ---: |" * (len(HEADERS) - 2) + " --- |",
            *(
                "| " + " | ".join((md_code(r[0]), *(md_text(c) for c in r[1:]))) + " |"
                for r in rows(headroom)
            ),
        ]
        notes = md_text(f"{scale_line(headroom)}; {headroom.method}")
        lines += [f"*{md_text(title(headroom))}*", "", *table, "", notes, ""]
    return lines


def html_parts(precision: PrecisionHeadroom | None) -> list[str]:
    if precision is None:
        return []
    parts = ["<h2>Number-format headroom</h2>"]
    for headroom in precision.formats:
        head = "".join(f"<th>{escape(h)}</th>" for h in HEADERS)
        body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows(headroom))
        parts += [
            f"<h3>{escape(title(headroom))}</h3>",
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>",
            f'<p class="meta">{escape(scale_line(headroom))}; {escape(headroom.method)}</p>',
        ]
    return parts
