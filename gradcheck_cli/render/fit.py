"""Tables that fit the terminal: numbers always whole, names shortened in the middle.

At any width from 80 columns up, a number is never cut (`8.6e-…` loses the exponent and so the
value); a long qualified name keeps its first segment and its distinguishing end
(`bert.…layer.0.attention.self.query`: query, key and value stay apart), and headers wrap at
their spaces instead of being cut. The full names stay in JSON and the other formats.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

ELLIPSIS = "…"
MIN_NAME = 10
"""The narrowest a name column gets; below it the table is allowed to run past the width."""
NAME_ROOM = 32
"""Headers stay on one line while that leaves a name this much room (or all it needs)."""


def middle(name: str, width: int) -> str:
    """`name` in at most `width` characters: its first dotted segment, an ellipsis, and as many
    whole trailing segments as fit (else the trailing characters)."""
    if len(name) <= width:
        return name
    if width <= 1:
        return ELLIPSIS[:width]
    parts = name.split(".")
    head = parts[0] + "." if len(parts) > 1 else ""
    for keep_head in (head, ""):
        budget = width - len(keep_head) - 1
        tail = _whole_segments(parts[1:] if keep_head else parts, budget)
        if tail:
            return f"{keep_head}{ELLIPSIS}{tail}"
    return ELLIPSIS + name[-(width - 1) :]


def _whole_segments(parts: Sequence[str], budget: int) -> str:
    tail = ""
    for part in reversed(parts):
        candidate = part if not tail else f"{part}.{tail}"
        if len(candidate) > budget:
            break
        tail = candidate
    return tail


def _room(widths: Sequence[int], name_column: int, width: int, gap: int) -> int:
    return width - sum(w for i, w in enumerate(widths) if i != name_column) - gap * (len(widths) - 1)


def cell_width(header: str, cells: Sequence[str]) -> int:
    """A column's width: its longest cell whole, and its header's longest word (headers wrap)."""
    words = [len(word) for word in header.split()] or [0]
    return max([*words, *(len(cell) for cell in cells)])


def fitted_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str | Text]],
    width: int,
    name_column: int = 0,
    boxed: bool = True,
    left: Sequence[int] = (),
) -> Table:
    """A table of text cells that fits `width`: every column but `name_column` as wide as its
    widest cell (numbers whole), headers wrapping at spaces, names shortened in the middle.
    A cell may be a styled Text; the name column's cells are plain text. Columns in `left` are
    left-aligned (words), the others right-aligned (numbers)."""
    plain = [[cell.plain if isinstance(cell, Text) else cell for cell in row] for row in rows]
    gap = 3 if boxed else 2
    full = [max(len(h), cell_width(h, [r[i] for r in plain])) for i, h in enumerate(headers)]
    widths = full
    if _room(full, name_column, width, gap) < min(full[name_column], NAME_ROOM):  # headers wrap
        widths = [cell_width(h, [r[i] for r in plain]) for i, h in enumerate(headers)]
    name_width = max(MIN_NAME, min(widths[name_column], _room(widths, name_column, width, gap)))
    table = Table(show_edge=False, pad_edge=False) if boxed else Table(box=None, pad_edge=False)
    for i, header in enumerate(headers):
        justify = "left" if i == name_column or i in left else "right"
        column_width = name_width if i == name_column else widths[i]
        table.add_column(header, justify=justify, width=column_width, overflow="fold")  # type: ignore[arg-type]
    for row, text in zip(rows, plain, strict=True):
        cells = [
            Text(middle(text[i], name_width))
            if i == name_column
            else cell
            if isinstance(cell, Text)
            else Text(cell)
            for i, cell in enumerate(row)
        ]
        table.add_row(*cells)
    return table
