"""What trying one fix found: torch-free records (render/json.py writes the contract's `fixes`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Measured:
    """Findings and the headline ratio of one measurement (before or after a fix)."""

    findings: tuple[str, ...]
    """Ids of the error and warning findings."""
    ratio: float | None
    """First-to-last gradient ratio of the finding being fixed (through time: first step / last)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TriedFix:
    fix: str
    where: str | None
    applied: bool
    """False when the fix could not be applied automatically (`note` says why)."""
    note: str
    before: Measured
    after: Measured | None
    """None when nothing was measured (not applied, or advice such as `clip`)."""
    cleared: tuple[str, ...] = ()
    parameters_delta: int = 0
    finding: str = ""
    """The finding whose suggestion this fix was."""
    max_norm: float | None = None
    """For `clip`: the clip_grad_norm_ max_norm derived from the measured norms."""
