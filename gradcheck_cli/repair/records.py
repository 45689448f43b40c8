"""What trying one fix found: torch-free records and their JSON form (the contract's `fixes`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


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


def _measured(m: Measured | None) -> dict[str, Any] | None:
    if m is None:
        return None
    ratio = m.ratio if m.ratio is None or math.isfinite(m.ratio) else None
    return {"findings": list(m.findings), "ratio": ratio}


def to_json(tried: TriedFix) -> dict[str, Any]:
    out: dict[str, Any] = {
        "fix": tried.fix,
        "where": tried.where,
        "applied": tried.applied,
        "note": tried.note,
        "before": _measured(tried.before),
        "after": _measured(tried.after),
        "cleared": list(tried.cleared),
        "parameters_delta": tried.parameters_delta,
        "finding": tried.finding,
    }
    if tried.max_norm is not None:
        out["max_norm"] = tried.max_norm
    return out
