"""The renderer interface: a Report in, text out."""

from __future__ import annotations

import math
from typing import ClassVar, Protocol

from gradcheck_cli.records.report import Report


class Renderer(Protocol):
    format: ClassVar[str]

    def render(self, report: Report) -> str: ...


def fmt_num(value: float) -> str:
    """A measured number in 3 significant digits, or a word for non-finite values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    if 1e-2 <= abs(value) < 1e4:
        return f"{value:.3g}"
    return f"{value:.1e}"
