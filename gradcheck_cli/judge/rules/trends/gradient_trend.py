"""gradient-trend: a layer's gradient norm grows or decays steadily over a training run."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import rule
from gradcheck_cli.judge.rules.trends.series import LogFit, change_bound, judged_fit, window
from gradcheck_cli.records.findings import Finding, Severity, Suggestion
from gradcheck_cli.records.history import History
from gradcheck_cli.records.stats import ProbeResult


@dataclass(frozen=True, slots=True)
class GradientTrendLimits:
    orders_per_1000_steps: float = 1.0
    """Fire when the fitted slope of log10(gradient norm) is steeper than this, either way."""
    min_change_orders: float = 1.0
    """... and the fitted line moves at least this many orders of magnitude over the window."""
    min_r2: float = 0.6
    """... and the line explains at least this share of the variance (a trend, not noise)."""
    min_points: float = 8
    """Measured steps needed before a slope is trusted."""
    window: float = 100
    """The fit uses the last this-many measured steps."""


@rule(
    id="gradient-trend",
    severity=Severity.WARNING,
    fixes=("clip", "lr", "layernorm", "init"),
    limits=GradientTrendLimits,
    needs_history=True,
)
def gradient_trend(probe: ProbeResult, limits: GradientTrendLimits) -> Iterator[Finding]:
    """A layer's gradient norm grows (or decays) by orders of magnitude over the measured steps.

    ## What it detects
    For each layer, a least-squares line through log10(gradient norm) against the step number,
    over the last `window` measured steps of a training run (GradientMonitor, the Lightning
    and Trainer callbacks, `gradcheck report run.jsonl`). A steep, sustained slope is reported
    in orders of magnitude per 1000 steps: a gradient doubling every 50 steps is
    log10(2) * 20 = 6.02 orders per 1000 steps. Growth and decay are separate findings.
    A single analysis (`gradcheck analyze`) has no history and never gets this finding.

    ## Why it matters
    Each measured step can look healthy on its own while the run drifts towards an explosion
    (growth) or towards a layer that stops learning (decay); the slope says how fast, long
    before a NaN or a flat loss curve.

    ## Evidence
    `direction` (growth or decay), `layers` with `slopes` (orders per 1000 steps, one per layer),
    `change_orders` and `r2` of the steepest layer, `first_step`, `last_step`, `points`, and
    the thresholds `orders_per_1000_steps`, `min_change_orders`, `min_r2`, `window`.

    ## Thresholds
    `orders_per_1000_steps` = 1.0, `min_change_orders` = 1.0 (the norm moved tenfold over the
    window), `min_r2` = 0.6 (stationary noise fits a line with r2 near 0), `min_points` = 8,
    `window` = 100 measured steps. A layer whose window holds a non-finite gradient is not
    fitted (`nonfinite-first-layer` reports where it started; a slope through a blow-up is
    meaningless), nor one with fewer than `min_points` finite positive norms.

    ## Fixes
    clip: clip the gradient norm so a growing gradient cannot blow up the weights.
    lr: lower the learning rate (a growing gradient is often the optimizer overshooting).
    layernorm: normalise the layer's input so its scale cannot drift.
    init: re-check the initialisation of the layer whose gradient decays.

    ## Example
    `tests/test_trends.py` trains a small MLP whose first layer's gradient is scaled by
    2 ** (step / 50): reported with a slope of 6.0 orders per 1000 steps (truth 6.02);
    the same model without the scale is not reported.
    """
    if probe.history is None:
        return
    fits = _fits(window(probe.history, int(limits.window)), limits)
    for direction, sign in (("growth", 1.0), ("decay", -1.0)):
        chosen = {name: fit for name, fit in fits.items() if sign * fit.orders_per_1000_steps > 0}
        if chosen:
            yield _finding(direction, chosen, limits)


def _fits(history: History, limits: GradientTrendLimits) -> dict[str, LogFit]:
    steps = history.step_numbers
    out: dict[str, LogFit] = {}
    for name in history.layer_names():
        values = history.layer_series(name, "grad_norm")
        if change_bound(steps, values) < limits.min_change_orders * (1 - 1e-6):
            continue  # no line through these values moves far enough to be steep: skip the fit
        bad = history.layer_series(name, "nonfinite")
        fit, _ = judged_fit(steps, values, bad, int(limits.min_points), limits.min_r2)
        if fit is not None and _steep(fit, limits):
            out[name] = fit
    return out


def _steep(fit: LogFit, limits: GradientTrendLimits) -> bool:
    return (
        abs(fit.orders_per_1000_steps) >= limits.orders_per_1000_steps
        and abs(fit.change_orders) >= limits.min_change_orders
        and fit.r2 >= limits.min_r2
    )


def _finding(direction: str, fits: dict[str, LogFit], limits: GradientTrendLimits) -> Finding:
    steepest_name, steepest = max(fits.items(), key=lambda kv: abs(kv[1].orders_per_1000_steps))
    verb = "grows" if direction == "growth" else "decays"
    factor = 10 ** abs(steepest.change_orders)
    others = f" ({len(fits) - 1} more layers likewise)" if len(fits) > 1 else ""
    return Finding(
        id="gradient-trend",
        severity=Severity.WARNING,
        layers=tuple(fits),
        message=(
            f"The gradient of {steepest_name} {verb} {factor:.3g}x from step {steepest.first_step} to "
            f"{steepest.last_step} ({steepest.orders_per_1000_steps:+.2f} orders of magnitude per 1000 "
            f"steps){others}."
        ),
        evidence={
            "direction": direction,
            "layers": list(fits),
            "slopes": [round(fit.orders_per_1000_steps, 4) for fit in fits.values()],
            "steepest": steepest_name,
            "change_orders": round(steepest.change_orders, 4),
            "r2": round(steepest.r2, 4),
            "first_step": steepest.first_step,
            "last_step": steepest.last_step,
            "points": steepest.points,
            "orders_per_1000_steps": limits.orders_per_1000_steps,
            "min_change_orders": limits.min_change_orders,
            "min_r2": limits.min_r2,
            "window": int(limits.window),
        },
        suggestions=_suggestions(direction),
    )


def _suggestions(direction: str) -> tuple[Suggestion, ...]:
    if direction == "growth":
        return (
            Suggestion(fix="clip", text="clip the gradient norm (torch.nn.utils.clip_grad_norm_)"),
            Suggestion(fix="lr", text="lower the learning rate or add warm-up"),
        )
    return (
        Suggestion(fix="lr", text="check the learning-rate schedule: the layer is learning less and less"),
        Suggestion(fix="layernorm", text="normalise the layer's input so its gradient keeps its scale"),
    )
