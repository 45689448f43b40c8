"""dead-units-growing: the fraction of dead ReLU units climbs during training."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import rule
from gradcheck_cli.judge.rules.trends.series import Edges, edges, window
from gradcheck_cli.records.findings import Finding, Severity, Suggestion
from gradcheck_cli.records.stats import ProbeResult


@dataclass(frozen=True, slots=True)
class DeadGrowingLimits:
    min_increase: float = 0.2
    """Fire when the dead fraction rose by at least this much (0.2 = 20 points of the units)."""
    min_dead: float = 0.25
    """... and at least this fraction is dead now."""
    min_points: float = 6
    window: float = 100
    """Measured steps considered (the latest)."""


@rule(
    id="dead-units-growing",
    severity=Severity.WARNING,
    fixes=("leaky-relu", "lr", "init", "batchnorm"),
    limits=DeadGrowingLimits,
    needs_history=True,
)
def dead_units_growing(probe: ProbeResult, limits: DeadGrowingLimits) -> Iterator[Finding]:
    """ReLU-family units die during training: the dead fraction climbs from step to step.

    ## What it detects
    For each ReLU-family activation, the median dead fraction (units never positive on the
    measured batch) of the first fifth of the window's measured steps (at least 3) and of the
    last fifth. It fires when the fraction rose by `min_increase` or more and `min_dead` or more
    of the units are dead now. `dead-units` judges one step; this one judges the direction.
    Needs a training history.

    ## Why it matters
    A unit that dies gets no gradient again: the layer loses capacity for good, typically
    because a large learning rate pushed its bias negative. Caught while it climbs, the
    learning rate can still be lowered before most of the layer is gone.

    ## Evidence
    `activations` (the modules), `after` (the layer before the first), `early_dead`,
    `recent_dead`, `early_steps` and `recent_steps`; thresholds `min_increase`, `min_dead`.

    ## Thresholds
    `min_increase` = 0.2, `min_dead` = 0.25, `min_points` = 6, `window` = 100 measured steps.

    ## Fixes
    leaky-relu: use LeakyReLU or GELU so units cannot die.
    lr: lower the learning rate (large steps knock units into the dead zone).
    init: initialise biases at a small positive value or with He init.
    batchnorm: normalise before the activation so pre-activations stay centred.

    ## Example
    `tests/rules/test_trend_rules.py`: a ReLU whose dead fraction climbs from 0.05 to 0.6 over
    30 measured steps fires; one steady at 0.3 does not.
    """
    if probe.history is None:
        return
    history = window(probe.history, int(limits.window))
    growing: dict[str, Edges] = {}
    for name in history.unit_names():
        unit = history.unit(name)
        if unit is None or unit.family != "relu":
            continue
        found = edges(
            history.step_numbers, history.unit_series(name, "dead_fraction"), int(limits.min_points)
        )
        if found and found.recent - found.early >= limits.min_increase and found.recent >= limits.min_dead:
            growing[name] = found
    if not growing:
        return
    name, found = max(growing.items(), key=lambda kv: kv[1].recent - kv[1].early)
    unit = history.unit(name)
    after = unit.after if unit else None
    yield Finding(
        id="dead-units-growing",
        severity=Severity.WARNING,
        layers=tuple(dict.fromkeys(u.after for n in growing if (u := history.unit(n)) and u.after)),
        message=(
            f"Dead units after {after or name} grew from {found.early:.0%} (steps {found.early_steps[0]}-"
            f"{found.early_steps[1]}) to {found.recent:.0%} (steps {found.recent_steps[0]}-"
            f"{found.recent_steps[1]})"
            + (f"; {len(growing) - 1} more activations likewise." if len(growing) > 1 else ".")
        ),
        evidence={
            "activations": list(growing),
            "after": after,
            "early_dead": round(found.early, 4),
            "recent_dead": round(found.recent, 4),
            "early_steps": list(found.early_steps),
            "recent_steps": list(found.recent_steps),
            "min_increase": limits.min_increase,
            "min_dead": limits.min_dead,
        },
        suggestions=(
            Suggestion(fix="leaky-relu", text="use LeakyReLU or GELU so units cannot die"),
            Suggestion(fix="lr", text="lower the learning rate"),
        ),
    )
