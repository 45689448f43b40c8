"""A layer's values of the registered per-layer measurements (measure/measurements.py)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Measures(Mapping[str, float]):
    """A layer's values of the registered measurements (measure/measurements.py), by name: a
    read-only mapping, frozen and hashable like the record that holds it."""

    items_: tuple[tuple[str, float], ...] = ()

    def __getitem__(self, name: str) -> float:
        for key, value in self.items_:
            if key == name:
                return value
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return (key for key, _ in self.items_)

    def __len__(self) -> int:
        return len(self.items_)
