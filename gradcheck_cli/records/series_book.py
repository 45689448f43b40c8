"""A monitor's measured steps as columns, kept up to date one step at a time. Torch-free.

The trend rules read a History as one series per layer (`layer_series`), and a monitor that
measures every step judges its whole window again at every step. Built from the steps alone,
each series is a pass over every step's layers: at 100 layers and a 200-step window that is
most of the cost of a measured step (docs/performance.md). The monitor appends each step
here once (one value per layer and field); a History built on the book then answers a series
with a slice, the layer names from the book's last-seen positions, and the total gradient
norm per step from a value summed when the step arrived. The answers are the ones the steps
give (tests/test_series_book.py compares them on histories with layers coming and going).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol


class _Point(Protocol):
    """A LayerPoint or UnitPoint (records/history.py, which imports this module)."""

    @property
    def name(self) -> str: ...


class _Step(Protocol):
    """A StepStats."""

    @property
    def step(self) -> int: ...
    @property
    def layers(self) -> Sequence[Any]: ...
    @property
    def units(self) -> Sequence[Any]: ...


LAYER_FIELDS = ("grad_norm", "weight_norm", "grad_weight_ratio", "zero_grad_fraction", "nonfinite")
UNIT_FIELDS = ("dead_fraction", "saturated_fraction")
_PRESENT = "present"
"""A column holding 1.0 where the layer or unit was measured at the step, NaN where absent."""


class _Columns:
    """Per name, per field, one float per step from position `first` on (NaN where absent)."""

    def __init__(self, fields: tuple[str, ...]) -> None:
        self.fields = (*fields, _PRESENT)
        self.columns: dict[str, dict[str, list[float]]] = {}
        self.latest: dict[str, tuple[int, _Point]] = {}
        """Name -> (the absolute position it was last seen at, its point there)."""

    def append(self, position: int, first: int, points: Sequence[_Point]) -> None:
        by_name = {point.name: point for point in points}  # a duplicate name: the last one, as History
        for name, point in by_name.items():
            columns = self.columns.get(name)
            if columns is None:
                columns = self.columns[name] = {f: [math.nan] * (position - first) for f in self.fields}
            for f in self.fields[:-1]:
                columns[f].append(float(getattr(point, f)))
            columns[_PRESENT].append(1.0)
            self.latest[name] = (position, point)
        for name, columns in self.columns.items():
            if name not in by_name:
                for values in columns.values():
                    values.append(math.nan)

    def drop(self, count: int, first: int) -> None:
        """Forget the first `count` positions; names last seen before `first` go entirely."""
        for name in [n for n, (last, _) in self.latest.items() if last < first]:
            del self.columns[name], self.latest[name]
        for columns in self.columns.values():
            for values in columns.values():
                del values[:count]


class SeriesBook:
    """Appended by GradientMonitor at each measured step; read through History(book=...)."""

    def __init__(self, keep: int) -> None:
        self.keep = max(1, keep)
        """The longest History built on the book: positions older than that may be dropped."""
        self.count = 0
        """Steps appended so far (the absolute position of the next one)."""
        self.first = 0
        """The absolute position of every column's first value."""
        self.layers = _Columns(LAYER_FIELDS)
        self.units = _Columns(UNIT_FIELDS)
        self.totals: list[float] = []
        """Per step, the whole model's gradient norm (float64, from its layers' norms)."""
        self.step_numbers: list[int] = []
        self.worst_nonfinite: list[float] = []
        """Per step, the largest non-finite count of any layer (-inf with no layer)."""

    def append(self, stats: _Step) -> None:
        self.layers.append(self.count, self.first, stats.layers)
        self.units.append(self.count, self.first, stats.units)
        norms = {p.name: p.grad_norm for p in stats.layers}.values()
        present = [v for v in norms if not math.isnan(v)]
        self.totals.append(math.sqrt(math.fsum(v * v for v in present)) if present else math.nan)
        self.step_numbers.append(stats.step)
        self.worst_nonfinite.append(max((float(p.nonfinite) for p in stats.layers), default=-math.inf))
        self.count += 1
        if self.count - self.first > 2 * self.keep:  # amortised: a copy every `keep` steps
            drop = self.count - self.first - self.keep
            self.first += drop
            self.layers.drop(drop, self.first)
            self.units.drop(drop, self.first)
            del self.totals[:drop], self.step_numbers[:drop], self.worst_nonfinite[:drop]

    def holds(self, start: int, end: int, steps: Sequence[_Step]) -> bool:
        """Positions [start, end) are kept and hold `steps` (checked by their step numbers at
        both ends: a monitor's steps are numbered in increasing order)."""
        if not (self.first <= start < end <= self.count) or len(steps) != end - start:
            return False
        numbers = self.step_numbers
        return (
            numbers[start - self.first] == steps[0].step and numbers[end - 1 - self.first] == steps[-1].step
        )

    def series(self, kind: str, name: str, field: str, start: int, end: int) -> tuple[float, ...] | None:
        """The values of positions [start, end), or None when the book does not keep that field."""
        columns = (self.layers if kind == "layers" else self.units).columns.get(name)
        if columns is None:
            fields = LAYER_FIELDS if kind == "layers" else UNIT_FIELDS
            return (math.nan,) * (end - start) if field in fields else None
        values = columns.get(field)
        if values is None or field == _PRESENT:
            return None
        return tuple(values[start - self.first : end - self.first])

    def names(self, kind: str, start: int) -> list[tuple[str, int, _Point]]:
        """(name, first position at or after `start` where it was seen, its latest point) for
        every name seen since `start` (valid when the History ends at the book's last step)."""
        book = self.layers if kind == "layers" else self.units
        out = []
        for name, (last, point) in book.latest.items():
            if last < start:
                continue
            present = book.columns[name][_PRESENT]
            position = start - self.first
            while math.isnan(present[position]):
                position += 1
            out.append((name, position + self.first, point))
        return out
