"""The rule registry: one finding id, one rule, registered once."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, get_args

from gradcheck_cli.records.errors import ConfigError
from gradcheck_cli.records.findings import Finding, FixId, Severity
from gradcheck_cli.records.report import Report
from gradcheck_cli.records.stats import ProbeResult

Check = Callable[[ProbeResult, Any], Iterator[Finding]]

DOC_SECTIONS = ("What it detects", "Why it matters", "Evidence", "Thresholds", "Fixes", "Example")


@dataclass(frozen=True, slots=True)
class AppliesWhen:
    """When a rule can fire at all on a run: a JUnit report shows a rule whose condition does not
    hold as skipped, with the reason (as pytest shows a test whose condition does not hold)."""

    holds: Callable[[Report], bool]
    otherwise: str | Callable[[Report], str]
    """Why the rule could not fire when `holds` is false (a function of the report, or words)."""

    def reason(self, report: Report) -> str | None:
        """None when the rule applies to this report's run, else why it does not."""
        if self.holds(report):
            return None
        return self.otherwise if isinstance(self.otherwise, str) else self.otherwise(report)


def has_activation(family: str, names: str) -> AppliesWhen:
    """The model has activations of `family` (sigmoid counts tanh too)."""
    families = {family, "tanh"} if family == "sigmoid" else {family}
    return AppliesWhen(
        lambda r: any(a.family in families for a in r.activations),
        f"no {names} activations found in the model",
    )


TRAINING_STEPS = AppliesWhen(lambda r: bool(r.run.steps), "no training steps (--steps 0)")
RECURRENT = AppliesWhen(lambda r: bool(r.through_time), "no recurrent layer to measure through time")
REFERENCE_STATE = AppliesWhen(lambda r: r.versus is not None, "no reference state (--versus)")


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleSpec:
    id: str
    severity: Severity
    """The default (worst) severity this rule reports."""
    fixes: tuple[FixId, ...]
    check: Check
    limits_type: type
    doc: str
    aliases: tuple[str, ...] = ()
    stage: str | None = None
    """The later stage that makes this finding (e.g. "baseline"); None: diagnosis runs `check`."""
    needs_history: bool = False
    """A trend rule: it reads ProbeResult.history (a training run's measured steps) and finds
    nothing in a single analysis."""
    applies_when: AppliesWhen | None = None
    """When the rule can fire at all (None: on every run)."""

    def not_applicable(self, report: Report) -> str | None:
        """Why this rule could not fire on the report's run, or None when it could."""
        return None if self.applies_when is None else self.applies_when.reason(report)

    def limits(self, overrides: Mapping[str, float] | None = None) -> Any:
        """The rule's thresholds, with config overrides applied (unknown keys are an error)."""
        if not overrides:
            return self.limits_type()
        names = [f.name for f in dataclasses.fields(self.limits_type)]
        for key in overrides:
            if key not in names:
                from gradcheck_cli.records.hints import did_you_mean

                raise ConfigError(
                    f"thresholds.{self.id}: unknown threshold {key!r} (known: {', '.join(names)})",
                    did_you_mean(key, names),
                )
        return self.limits_type(**{k: float(v) for k, v in overrides.items()})


_REGISTRY: dict[str, RuleSpec] = {}


def rule(
    *,
    id: str,
    severity: Severity,
    fixes: tuple[FixId, ...],
    limits: type,
    aliases: tuple[str, ...] = (),
    stage: str | None = None,
    needs_history: bool = False,
    applies_when: AppliesWhen | None = None,
) -> Callable[[Check], Check]:
    """Register a check function as the rule for finding `id`."""
    valid = set(get_args(FixId))

    def register(check: Check) -> Check:
        if id in _REGISTRY:
            raise RuntimeError(f"duplicate registrations for rule id {id!r}")
        unknown = [f for f in fixes if f not in valid]
        if unknown:
            raise RuntimeError(f"rule {id!r} names unknown fixes {unknown}")
        _REGISTRY[id] = RuleSpec(
            id=id,
            severity=severity,
            fixes=fixes,
            check=check,
            limits_type=limits,
            doc=(check.__doc__ or "").strip(),
            aliases=aliases,
            stage=stage,
            needs_history=needs_history,
            applies_when=applies_when,
        )
        return check

    return register


def registry() -> dict[str, RuleSpec]:
    return _REGISTRY
