"""Verdict vocabulary: severities, layer statuses, fix ids, findings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal, Union

JSONScalar = Union[str, int, float, bool, None]  # noqa: UP007 (a runtime alias, 3.10-safe)
Evidence = Mapping[str, Union[JSONScalar, Sequence[JSONScalar]]]  # noqa: UP007

FixId = Literal[
    "residual",
    "batchnorm",
    "layernorm",
    "activation",
    "init",
    "clip",
    "lr",
    "gru",
    "lstm",
    "leaky-relu",
    "grad-scaler",
    "eps",
    "graph",
    "warmup",
    "weight-decay",
    "optimizer",
    "zero-grad",
    "scheduler",
    "precision",
]


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"info": 1, "warning": 2, "error": 3}[self.value]


class FailOn(str, Enum):
    """The fail-on threshold (--fail-on, `fail-on:`, a callback's `fail_on=`): which severities
    fail a run. Declared once; every place that turns findings into a failure asks `fails`."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"
    NEVER = "never"

    @classmethod
    def choices(cls) -> tuple[str, ...]:
        return tuple(level.value for level in cls)

    def fails(self, severity: Severity | str) -> bool:
        """Whether a finding of `severity` is at or above this threshold (`never`: none is).
        A severity name this version does not know (read from a file) fails nothing."""
        if self is FailOn.NEVER:
            return False
        try:
            rank = Severity(severity).rank
        except ValueError:
            return False
        return rank >= Severity(self.value).rank


class LayerStatus(str, Enum):
    OK = "ok"
    VANISHING = "vanishing"
    EXPLODING = "exploding"
    DEAD = "dead"
    SATURATED = "saturated"
    NONFINITE = "nonfinite"
    NO_GRAD = "no-grad"
    FROZEN = "frozen"
    GATED = "gated"
    """Its output gradient is zero at init only because a zero-initialised parameter downstream,
    which gets a gradient, closes the path: a design (zero-init residual gains, zero heads)."""
    NOT_MEASURED = "not-measured"
    """Its output-gradient hook did not fire although its parameters got a gradient."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Suggestion:
    fix: FixId
    text: str
    where: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    id: str
    severity: Severity
    layers: tuple[str, ...]
    message: str
    evidence: Evidence = field(default_factory=dict)
    suggestions: tuple[Suggestion, ...] = ()
    status: LayerStatus | None = None
    """The status this finding gives its layers (None: it marks no layer)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Ignored:
    """A finding (or the part of it on some layers) that the repository's policy suppressed."""

    finding: Finding
    reason: str
    """Which setting suppressed it: `rules: off`, `ignore:`, `--ignore`, `--select`, or an
    inline `# gradcheck: ignore[...]` comment (with its file:line)."""
