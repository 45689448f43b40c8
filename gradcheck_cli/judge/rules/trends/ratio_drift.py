"""ratio-drift: a layer's grad/weight ratio drifts out of the healthy range during training."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import rule
from gradcheck_cli.judge.rules.trends.series import Edges, edges, window
from gradcheck_cli.records.findings import Finding, Severity, Suggestion
from gradcheck_cli.records.stats import ProbeResult


@dataclass(frozen=True, slots=True)
class RatioDriftLimits:
    low: float = 1e-6
    """Below this grad/weight ratio a layer barely learns: lr * ratio is its relative step."""
    high: float = 1.0
    """Above it the gradient outweighs the weights: one step of lr >= 1e-2 rewrites the layer."""
    min_drift_orders: float = 1.0
    """... and the ratio moved at least this many orders of magnitude from early to recent."""
    min_points: float = 6
    window: float = 100
    """Measured steps considered (the latest)."""


@rule(
    id="ratio-drift",
    severity=Severity.WARNING,
    fixes=("lr", "clip", "layernorm"),
    limits=RatioDriftLimits,
    needs_history=True,
)
def ratio_drift(probe: ProbeResult, limits: RatioDriftLimits) -> Iterator[Finding]:
    """A layer's grad/weight ratio started in range and has drifted out of it.

    ## What it detects
    For each layer, the median grad/weight ratio (gradient norm over weight norm) of the first
    fifth of the window's measured steps (at least 3) and of the last fifth. It fires when the
    early median was inside [`low`, `high`], the recent one is outside, and the two are at
    least `min_drift_orders` apart. This catches weights that grow while the gradient does not
    (the ratio falls), which a gradient-norm trend alone misses. Needs a training history.

    ## Why it matters
    With SGD a layer's relative weight change per step is lr * grad/weight; a ratio sinking
    below 1e-6 means the layer has stopped learning, one above 1 means each step can rewrite
    it. A drift is the run changing regime, usually the learning rate against a growing weight.

    ## Evidence
    `direction` (up or down), `layers`, and for the first: `early_ratio`, `recent_ratio`,
    `early_steps` and `recent_steps` (first and last step of each median), `drift_orders`;
    thresholds `low`, `high`, `min_drift_orders`.

    ## Thresholds
    `low` = 1e-6, `high` = 1.0, `min_drift_orders` = 1.0, `min_points` = 6, `window` = 100.

    ## Fixes
    lr: lower the learning rate (ratio rising) or check the schedule and weight decay (falling).
    clip: clip the gradient norm while the ratio is high.
    layernorm: normalise the layer's input so its weights cannot grow without bound.

    ## Example
    `tests/rules/test_trend_rules.py`: a ratio falling from 1e-3 to 1e-8 over 40 measured steps
    fires (direction down); one staying near 1e-3 does not.
    """
    if probe.history is None:
        return
    history = window(probe.history, int(limits.window))
    drifted: dict[str, Edges] = {}
    for name in history.layer_names():
        found = edges(
            history.step_numbers, history.layer_series(name, "grad_weight_ratio"), int(limits.min_points)
        )
        if found is not None and _drifted(found, limits):
            drifted[name] = found
    for direction in ("up", "down"):
        chosen = {n: e for n, e in drifted.items() if (e.recent > e.early) == (direction == "up")}
        if chosen:
            yield _finding(direction, chosen, limits)


def _drifted(found: Edges, limits: RatioDriftLimits) -> bool:
    if not (limits.low <= found.early <= limits.high) or limits.low <= found.recent <= limits.high:
        return False
    if found.recent <= 0 or found.early <= 0:
        return found.recent == 0  # a ratio that fell to exactly zero: the gradient vanished
    return abs(math.log10(found.recent / found.early)) >= limits.min_drift_orders


def _finding(direction: str, drifted: dict[str, Edges], limits: RatioDriftLimits) -> Finding:
    name, found = next(iter(drifted.items()))
    orders = math.log10(found.recent / found.early) if found.recent > 0 else -math.inf
    bound = limits.high if direction == "up" else limits.low
    return Finding(
        id="ratio-drift",
        severity=Severity.WARNING,
        layers=tuple(drifted),
        message=(
            f"The grad/weight ratio of {name} drifted from {found.early:.2g} (steps {found.early_steps[0]}-"
            f"{found.early_steps[1]}) to {found.recent:.2g} (steps {found.recent_steps[0]}-"
            f"{found.recent_steps[1]}), {'above' if direction == 'up' else 'below'} {bound:g}"
            + (f"; {len(drifted) - 1} more layers likewise." if len(drifted) > 1 else ".")
        ),
        evidence={
            "direction": direction,
            "layers": list(drifted),
            "early_ratio": found.early,
            "recent_ratio": found.recent,
            "early_steps": list(found.early_steps),
            "recent_steps": list(found.recent_steps),
            "drift_orders": round(orders, 4) if math.isfinite(orders) else None,
            "low": limits.low,
            "high": limits.high,
            "min_drift_orders": limits.min_drift_orders,
        },
        suggestions=(
            Suggestion(
                fix="lr",
                text="lower the learning rate"
                if direction == "up"
                else "check the lr schedule and weight decay",
            ),
        ),
    )
