"""What `gradcheck scale` measured and concluded: torch-free frozen records.

`ScaleSamples` is what the measuring stage hands the judge (each module's RMS values per seed,
width and step); `ScaleReport` is what the judge makes of it (each module's exponents against
width, the declared parametrization's expectation, findings) and what every renderer reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gradcheck_cli import __version__
from gradcheck_cli.records.findings import Finding
from gradcheck_cli.records.report import Summary

SCALE_SCHEMA = "gradcheck.scale/1"
QUANTITIES = ("forward", "backward", "update")
"""forward: RMS of the module's output; backward: RMS of the loss gradient at that output;
update: RMS of (output at t) - (output at t = 1) on the same batch."""
ROLES = ("input", "hidden", "readout", "norm", "attention", "fixed")
"""input: fan-in fixed, fan-out grows with width (embeddings); hidden: both grow; readout: fan-in
grows, fan-out fixed; norm: normalisations and modules with only vector parameters; attention:
attention blocks (their output); fixed: neither dimension grows (not judged)."""
HEADLINE_STEP = {"forward": 1, "backward": 1, "update": 2}
"""The step t each quantity is judged at: forward and backward at init, update after one step."""

Grid = tuple[tuple[tuple[float | None, ...], ...], ...]
"""RMS values [seed][width][t - 1]; None where nothing was measured (update at t = 1)."""
Band = tuple[float | None, float | None]
"""An expected exponent range, low to high; None: unbounded on that side."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModuleSamples:
    name: str
    kind: str
    """The module's class name."""
    role: str
    fan_in: tuple[int, ...]
    """Per width (0 for modules without a weight matrix)."""
    fan_out: tuple[int, ...]
    forward: Grid
    backward: Grid
    update: Grid


@dataclass(frozen=True, slots=True, kw_only=True)
class ScaleSamples:
    target: str
    key: str
    widths: tuple[int, ...]
    seeds: tuple[int, ...]
    steps: int
    optimizer: str
    """Where the optimizer came from, e.g. "configure_optimizers() in the model file"."""
    device: str
    modules: tuple[ModuleSamples, ...]
    seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ModuleScaling:
    name: str
    role: str
    kind: str
    fan_in: str
    """"16" or "width" (grows with it), as the shapes showed."""
    fan_out: str
    forward: float | None
    """The slope of log RMS against log width at the headline step (mean over seeds)."""
    backward: float | None
    update: float | None
    spread: Mapping[str, float]
    """Per quantity: the largest minus the smallest exponent over seeds."""
    expected: Mapping[str, Band]
    status: str
    """ok, off (an exponent outside its band) or unchecked (role fixed, or nothing measurable)."""
    by_step: Mapping[str, tuple[float | None, ...]] = field(default_factory=dict)
    """Per quantity, the exponent at every t = 1..steps."""
    rms: Mapping[str, tuple[float | None, ...]] = field(default_factory=dict)
    """Per quantity, the mean RMS at each width at the headline step (the chart's points)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RoleScaling:
    role: str
    modules: int
    forward: float | None
    backward: float | None
    update: float | None
    expected: Mapping[str, Band]
    status: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ScaleReport:
    target: str
    parametrization: str
    key: str
    widths: tuple[int, ...]
    seeds: int
    steps: int
    optimizer: str
    device: str
    tolerance: float
    """How far outside its band an exponent may lie before it is a finding."""
    modules: tuple[ModuleScaling, ...]
    roles: tuple[RoleScaling, ...]
    findings: tuple[Finding, ...]
    summary: Summary
    seconds: float
    schema: str = SCALE_SCHEMA
    tool_version: str = __version__
