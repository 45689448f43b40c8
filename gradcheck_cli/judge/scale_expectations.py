"""The exponents a healthy model has under each declared parametrization: RMS ~ width^exponent for
each role and quantity. docs/scaling.md derives every entry; tests/test_scale.py checks them on
models whose exponents follow from linear algebra.

Bands are (low, high); None is unbounded. forward and backward are read at t = 1 (init), update
(the output's change on the fixed batch) at t = 2, after one optimizer step.
"""

from __future__ import annotations

from collections.abc import Mapping

from gradcheck_cli.records.scaling import Band

Table = Mapping[str, Mapping[str, Band]]

STABLE: Band = (None, 0.0)
"""Standard parametrization promises no feature-learning rate: an update that does not grow."""

STANDARD: Table = {
    "input": {"forward": (0.0, 0.0), "backward": (-0.5, -0.5), "update": STABLE},
    "hidden": {"forward": (0.0, 0.0), "backward": (-0.5, -0.5), "update": STABLE},
    "readout": {"forward": (0.0, 0.0), "backward": (0.0, 0.0), "update": STABLE},
    "norm": {"forward": (0.0, 0.0), "backward": (-0.5, -0.5), "update": STABLE},
    "attention": {"forward": (0.0, 0.0), "backward": (-0.5, -0.5), "update": STABLE},
}
MUP: Table = {
    "input": {"forward": (0.0, 0.0), "backward": (-1.0, -1.0), "update": (0.0, 0.0)},
    "hidden": {"forward": (0.0, 0.0), "backward": (-1.0, -1.0), "update": (0.0, 0.0)},
    "readout": {"forward": (-1.0, -0.5), "backward": (0.0, 0.0), "update": (0.0, 0.0)},
    "norm": {"forward": (0.0, 0.0), "backward": (-1.0, -1.0), "update": (0.0, 0.0)},
    "attention": {"forward": (0.0, 0.0), "backward": (-1.0, -1.0), "update": (0.0, 0.0)},
}
EXPECTED: Mapping[str, Table] = {"standard": STANDARD, "mup": MUP}
NAMES = {"standard": "standard parametrization", "mup": "muP"}


def expected(parametrization: str, role: str) -> Mapping[str, Band]:
    """The bands of `role` (empty for a role that is not judged, e.g. fixed)."""
    return EXPECTED[parametrization].get(role, {})


def _signed(value: float) -> str:
    return "0" if value == 0 else f"{value:+.2g}"


def band_text(band: Band) -> str:
    low, high = band
    if low is None and high is None:
        return "any"
    if low is None:
        return f"<= {_signed(high)}"  # type: ignore[arg-type]
    if high is None:
        return f">= {_signed(low)}"
    return _signed(low) if low == high else f"{_signed(low)}..{_signed(high)}"


def outside(value: float, band: Band, tolerance: float) -> float:
    """How far `value` lies above (positive) or below (negative) the band widened by `tolerance`;
    0 inside it."""
    low, high = band
    if high is not None and value > high + tolerance:
        return value - high
    if low is not None and value < low - tolerance:
        return value - low
    return 0.0
