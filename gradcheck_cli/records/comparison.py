"""The records of a baseline comparison (torch-free): what changed between two runs, layer by layer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerChange:
    name: str
    old_ratio: float | None
    new_ratio: float | None
    orders: float | None
    """log10(new / old); -inf when the gradient disappeared, None when not comparable."""
    old_status: str
    new_status: str
    regressed: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Comparison:
    layers: tuple[LayerChange, ...]
    new_findings: tuple[str, ...]
    resolved_findings: tuple[str, ...]
    kept_findings: tuple[str, ...]
    added_layers: tuple[str, ...]
    removed_layers: tuple[str, ...]
    orders_limit: float

    @property
    def regressed_layers(self) -> tuple[LayerChange, ...]:
        return tuple(change for change in self.layers if change.regressed)

    @property
    def regressed(self) -> bool:
        return bool(self.new_findings or self.regressed_layers)


@dataclass(frozen=True, slots=True, kw_only=True)
class BaselineComparison:
    """--baseline: the comparison of this run with the saved report `file`."""

    file: str
    comparison: Comparison
