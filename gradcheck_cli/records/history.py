"""A training run's measured steps as series: what the trend rules and `gradcheck report` read.

The monitor turns each measured step's Report into a StepStats (a few numbers per layer and
per activation, no tensors); a History is those steps in order, viewed as one series per
layer. The same records are read back from a monitor's JSON-lines file, so a run measured on
a cluster is judged the same way on a laptop. Torch-free.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradcheck_cli.records.errors import GradcheckError
from gradcheck_cli.records.files import check_regular, check_size
from gradcheck_cli.records.loop import LoopPoint, loop_from_document
from gradcheck_cli.records.series_book import SeriesBook


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerPoint:
    """One parameter-owning layer at one measured step."""

    name: str
    type: str
    index: int
    """Forward execution order."""
    grad_norm: float
    weight_norm: float
    grad_weight_ratio: float
    zero_grad_fraction: float
    nonfinite: int


@dataclass(frozen=True, slots=True, kw_only=True)
class UnitPoint:
    """One activation module (ReLU family, sigmoid, tanh) at one measured step."""

    name: str
    family: str
    after: str | None
    """The parameter-owning layer that ran just before it."""
    dead_fraction: float
    saturated_fraction: float


@dataclass(frozen=True, slots=True, kw_only=True)
class StepStats:
    """What a monitor measured at one training step."""

    step: int
    loss: float | None
    """The loss passed to the monitor (NaN/inf kept as such); None when none was passed."""
    seconds: float
    layers: tuple[LayerPoint, ...]
    units: tuple[UnitPoint, ...] = ()
    document: Mapping[str, Any] | None = None
    """The step's gradcheck.report/1 document, for sinks that write it whole (JSON lines);
    None once kept in a History, or when read back from a file."""
    loop: LoopPoint | None = None
    """What the user's loop did (optimizer groups, learning rates, zero_grad, GradScaler);
    None when the monitor was not given the optimizer."""
    frozen: tuple[str, ...] = ()
    """Parameter-owning layers with no trainable parameter at this step."""


@dataclass(frozen=True, slots=True, kw_only=True)
class History:
    """Measured steps in order. Series helpers give NaN where a step lacks a layer.

    `book`: a monitor's SeriesBook whose last `len(steps)` positions before `book_end` are
    these steps; the series then come from its columns instead of a pass over the steps."""

    steps: tuple[StepStats, ...]
    book: SeriesBook | None = field(default=None, compare=False, repr=False)
    book_end: int = field(default=0, compare=False, repr=False)
    _index: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    """Name -> point per step, built on first use: a series costs one pass over the steps."""

    @property
    def step_numbers(self) -> tuple[int, ...]:
        return tuple(s.step for s in self.steps)

    def last(self, points: int) -> History:
        """The last `points` steps (at least one), on the same book."""
        return History(steps=self.steps[-max(1, points) :], book=self.book, book_end=self.book_end)

    def _span(self, current: bool = False) -> tuple[int, int] | None:
        """The book positions of these steps, when the book holds them (and, with `current`,
        they end at the book's latest step: names and latest points are kept for that end only)."""
        book, end = self.book, self.book_end
        start = end - len(self.steps)
        if book is None or not book.holds(start, end, self.steps) or (current and end != book.count):
            return None
        return start, end

    def _layers(self) -> list[dict[str, LayerPoint]]:
        if "layers" not in self._index:
            self._index["layers"] = [{p.name: p for p in s.layers} for s in self.steps]
        return self._index["layers"]

    def _units(self) -> list[dict[str, UnitPoint]]:
        if "units" not in self._index:
            self._index["units"] = [{u.name: u for u in s.units} for s in self.steps]
        return self._index["units"]

    def layer_names(self) -> tuple[str, ...]:
        """Every layer seen, in forward order (the latest index wins)."""
        span = self._span(current=True)
        if span is not None and self.book is not None:
            return tuple(n for n, _, _ in self._booked("layers", span[0], lambda p: (p.index,)))
        index: dict[str, int] = {}
        for stats in self.steps:
            for point in stats.layers:
                index[point.name] = point.index
        return tuple(sorted(index, key=lambda name: index[name]))

    def unit_names(self) -> tuple[str, ...]:
        span = self._span(current=True)
        if span is not None and self.book is not None:
            return tuple(n for n, _, _ in self._booked("units", span[0], lambda p: ()))
        return tuple(dict.fromkeys(u.name for s in self.steps for u in s.units))

    def _booked(self, kind: str, start: int, first_key: Callable[[Any], tuple[int, ...]]) -> list[Any]:
        """The book's names seen since `start`, ordered as a pass over the steps would insert
        them (first step seen, then place within that step), sorted by `first_key`."""
        assert self.book is not None
        found = self.book.names(kind, start)
        places: dict[int, dict[str, int]] = {}
        for _, position, _ in found:
            if position not in places:
                points = getattr(self.steps[position - start], kind)
                places[position] = {}
                for i, p in enumerate(points):
                    places[position].setdefault(p.name, i)
        return sorted(found, key=lambda f: (*first_key(f[2]), f[1], places[f[1]][f[0]]))

    def layer_series(self, name: str, field: str) -> tuple[float, ...]:
        span = self._span()
        if span is not None and self.book is not None:
            values = self.book.series("layers", name, field, *span)
            if values is not None:
                return values
        return tuple(_value(step.get(name), field) for step in self._layers())

    def unit_series(self, name: str, field: str) -> tuple[float, ...]:
        span = self._span()
        if span is not None and self.book is not None:
            values = self.book.series("units", name, field, *span)
            if values is not None:
                return values
        return tuple(_value(step.get(name), field) for step in self._units())

    def total_grad_norms(self) -> tuple[float, ...] | None:
        """Per step, the whole model's gradient norm summed in float64 from the layers' norms,
        when the book keeps it (None: sum the layer series)."""
        span = self._span(current=True)
        if span is None or self.book is None:
            return None
        if not self.book.names("layers", span[0]):
            return ()  # no layer seen: no series to sum
        first = self.book.first
        return tuple(self.book.totals[span[0] - first : span[1] - first])

    def worst_nonfinite(self) -> tuple[float, ...] | None:
        """Per step, the largest non-finite count of any of its layers, when the book keeps it."""
        span = self._span()
        if span is None or self.book is None:
            return None
        first = self.book.first
        return tuple(self.book.worst_nonfinite[span[0] - first : span[1] - first])

    def unit(self, name: str) -> UnitPoint | None:
        """The latest measurement of an activation module."""
        span = self._span(current=True)
        if span is not None and self.book is not None:
            last = self.book.units.latest.get(name)
            return last[1] if last is not None and last[0] >= span[0] else None  # type: ignore[return-value]
        return next((step[name] for step in reversed(self._units()) if name in step), None)

    def layer(self, name: str) -> LayerPoint | None:
        span = self._span(current=True)
        if span is not None and self.book is not None:
            last = self.book.layers.latest.get(name)
            return last[1] if last is not None and last[0] >= span[0] else None  # type: ignore[return-value]
        return next((step[name] for step in reversed(self._layers()) if name in step), None)


def _value(point: LayerPoint | UnitPoint | None, field: str) -> float:
    return math.nan if point is None else float(getattr(point, field))


# -- JSON lines: the monitor's file ---------------------------------------------------------------
def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def from_document(line: Mapping[str, Any]) -> StepStats:
    """A StepStats from one line of a monitor's JSON-lines file (KeyError/TypeError if malformed)."""
    loss = line.get("loss")
    if loss is None and line.get("loss_nonfinite"):
        loss = math.nan
    layers = tuple(
        LayerPoint(
            name=str(layer["name"]),
            type=str(layer.get("type", "")),
            index=int(layer.get("index", i)),
            grad_norm=_num(layer.get("grad_norm")),
            weight_norm=_num(layer.get("weight_norm")),
            grad_weight_ratio=_num(layer.get("grad_weight_ratio")),
            zero_grad_fraction=_num(layer.get("zero_grad_fraction")),
            nonfinite=int(layer.get("nonfinite") or 0),
        )
        for i, layer in enumerate(line["layers"])
        if layer.get("status") != "frozen"
    )
    units = tuple(
        UnitPoint(
            name=str(unit["name"]),
            family=str(unit.get("family", "")),
            after=unit.get("after"),
            dead_fraction=_num(unit.get("dead_fraction")),
            saturated_fraction=_num(unit.get("saturated_fraction")),
        )
        for unit in line.get("activations", ())
    )
    return StepStats(
        step=int(line["step"]),
        loss=None if loss is None else float(loss),
        seconds=float(line.get("seconds") or 0.0),
        layers=layers,
        units=units,
        loop=loop_from_document(line.get("loop")),
        frozen=tuple(str(layer["name"]) for layer in line["layers"] if layer.get("status") == "frozen"),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class RunLog:
    """A monitor's JSON-lines file read back: the history and the findings it logged."""

    path: str
    history: History
    logged: tuple[tuple[int, Mapping[str, Any]], ...]
    """(step, finding document) for each finding the first time its id appeared."""
    model: str


def read_run(path: Path) -> RunLog:
    """Read a monitor's JSON-lines file; a line that is not one is an error naming file:line."""
    check_regular(path, "run file", hint="pass the monitor's jsonl= file")
    check_size(path, "run file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise GradcheckError(f"cannot read {path}: {error}", "pass the monitor's jsonl= file") from None
    steps: list[StepStats] = []
    logged: list[tuple[int, Mapping[str, Any]]] = []
    seen: set[str] = set()
    model = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
            steps.append(from_document(line))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise GradcheckError(
                f"{path}:{number}: not a gradcheck monitor line ({type(error).__name__}: {error})",
                "the file must be written by GradientMonitor(jsonl=...) or a gradcheck integration",
            ) from None
        model = model or str(line.get("model", {}).get("class", ""))
        for finding in line.get("findings", ()):
            if finding.get("id") not in seen:
                seen.add(finding.get("id"))
                logged.append((steps[-1].step, finding))
    if not steps:
        raise GradcheckError(f"{path}: no measured steps in the file", "is it a monitor's jsonl= file?")
    return RunLog(path=str(path), history=History(steps=tuple(steps)), logged=tuple(logged), model=model)
