"""What --lr-headroom measured: k steps on one fixed batch at the learning rate times each
multiplier, from the same initial state, and the smallest multiplier at which the run broke.

The series are measured by measure/lr_headroom.py; which multiplier broke, on which instrument
and at which layer, is judged by judge/headroom.py (the definitions are there and in
docs/lr-headroom.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

INSTRUMENTS = (
    "loss",
    "update_ratio",
    "attention_max_logit",
    "attention_entropy",
    "logit_rms",
    "log_partition",
)
"""What is recorded at every step. `loss` trips on divergence (non-finite, or above
`loss_factor` times the first step's loss); the others on super-linear growth."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Series:
    """One instrument at one place (a layer, an attention head, the output) over the k steps."""

    instrument: str
    layer: str
    """The module (update_ratio), `site:hN` (attention head N of a site), or the output's name."""
    values: tuple[float, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Trip:
    """An instrument that broke at one multiplier."""

    instrument: str
    layer: str
    step: int
    """1-based: the first step at which the excursion passed what was allowed."""
    excursion: float
    """The measured excursion over the run (see judge/headroom.py for each instrument's)."""
    allowed: float
    """What linear growth from the reference run allows at this multiplier. For the loss: the
    factor over its first value (excursion: the ratio reached, inf when non-finite), or for a
    stall the share of the reference's progress required (excursion: the share kept)."""
    how: str = "super-linear"
    """super-linear, or for the loss: non-finite, diverged (above the factor) or stalled."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Peak:
    """The largest excursion of one instrument over all its places, at one multiplier."""

    instrument: str
    layer: str
    excursion: float


@dataclass(frozen=True, slots=True, kw_only=True)
class HeadroomRun:
    """The k steps at one multiplier."""

    multiplier: float
    lr: float
    """The largest param-group learning rate the run used (the base rate times the multiplier)."""
    loss: tuple[float, ...]
    """The loss at each completed step (a non-finite step ends the run and is not recorded)."""
    nonfinite_step: int | None = None
    """1-based: the step whose loss, output, gradient or weights went non-finite."""
    series: tuple[Series, ...] = ()
    peaks: tuple[Peak, ...] = ()
    trips: tuple[Trip, ...] = ()
    """Every instrument (and place) that broke; empty when the run is within linear growth."""

    @property
    def broke(self) -> bool:
        return bool(self.trips)


@dataclass(frozen=True, slots=True, kw_only=True)
class LrHeadroom:
    """--lr-headroom: the runs, and the smallest multiplier at which one broke."""

    lr: float
    """The base learning rate (--lr, or the user's optimizer's)."""
    optimizer: str
    optimizer_source: str
    steps: int
    multipliers: tuple[float, ...]
    runs: tuple[HeadroomRun, ...]
    limit: float | None
    """The smallest multiplier whose run broke; None: none broke (headroom above the largest)."""
    first_instrument: str | None = None
    """At the limit: the instrument that broke at the earliest step."""
    layer: str | None = None
    """Where that instrument broke (a module, `site:hN`, the output's name, or `loss`)."""
    step: int | None = None
    """The 1-based step at which it broke."""
    criteria: dict[str, float] = field(default_factory=dict)
    """The constants the judgement used (super-linear factor, floors, loss factor)."""
