"""gradient-trend: a layer's gradient norm grows or decays by orders of magnitude, and the loss
says it is a problem (not learning)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import rule
from gradcheck_cli.judge.rules.trends.series import (
    LogFit,
    change_bound,
    judged_fit,
    log_fit,
    positive_points,
    window,
)
from gradcheck_cli.records.findings import Finding, Severity, Suggestion
from gradcheck_cli.records.history import History
from gradcheck_cli.records.stats import ProbeResult


@dataclass(frozen=True, slots=True)
class GradientTrendLimits:
    orders_per_1000_steps: float = 1.0
    """Fire when the fitted slope of log10(gradient norm) is steeper than this, either way."""
    min_change_orders: float = 1.0
    """... and the fitted line moves at least this many orders of magnitude over the window
    (for a decay: this many orders more than the loss fell)."""
    min_r2: float = 0.6
    """... and the line explains at least this share of the variance (a trend, not noise)."""
    min_points: float = 20
    """Measured steps (with a finite gradient and a finite loss) needed before a slope is trusted."""
    window: float = 100
    """The fit uses the last this-many measured steps."""
    loss_fall_orders: float = 0.05
    """The loss counts as falling when its fitted line drops by at least this many orders
    (0.05 = 11%) over the window ..."""
    loss_fall_t: float = 2.0
    """... with a slope at least this many standard errors below zero (not noise)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Judged:
    """One layer's gradient slope next to the loss's over the same steps."""

    grad: LogFit
    loss: LogFit | None
    """None: no finite positive loss recorded on enough of these steps."""
    loss_t: float

    @property
    def loss_change(self) -> float:
        return 0.0 if self.loss is None else self.loss.change_orders

    @property
    def excess(self) -> float:
        """Orders the gradient moved beyond what the loss moved (a decay: how much faster it fell)."""
        return self.grad.change_orders - self.loss_change

    def loss_falling(self, limits: GradientTrendLimits) -> bool:
        return self.loss_change <= -limits.loss_fall_orders and self.loss_t <= -limits.loss_fall_t


@rule(
    id="gradient-trend",
    severity=Severity.WARNING,
    fixes=("clip", "lr", "layernorm", "init"),
    limits=GradientTrendLimits,
    needs_history=True,
)
def gradient_trend(probe: ProbeResult, limits: GradientTrendLimits) -> Iterator[Finding]:
    """A layer's gradient norm grows while the loss does not fall, or decays far faster than the loss.

    ## What it detects
    For each layer, a least-squares line through log10(gradient norm) against the step number,
    over the last `window` measured steps of a training run (GradientMonitor, the Lightning
    and Trainer callbacks, `gradcheck report run.jsonl`), and the same line through log10(loss)
    over the same steps. The slope is reported in orders of magnitude per 1000 steps: a
    gradient doubling every 50 steps is log10(2) * 20 = 6.02 orders per 1000 steps.
    - growth: the gradient grows by `min_change_orders` or more while the loss is not falling
      (flat or rising): the optimizer is overshooting, not learning.
    - decay: the gradient falls by `min_change_orders` more than the loss does over the same
      steps (with a flat loss: by that much outright): the layer stops learning.
    A single analysis (`gradcheck analyze`) has no history and never gets this finding.

    ## Why it matters
    Each measured step can look healthy on its own while the run drifts towards an explosion
    (growth) or towards a layer that stops learning (decay); the slope says how fast, long
    before a NaN or a flat loss curve. But a gradient that moves while the loss falls is
    usually learning: with cross-entropy the gradient at the logits is p - y, whose size
    shrinks in proportion to the loss as the model becomes right, so a gradient that falls as
    fast as the loss is convergence; and a first layer's gradient is the loss's times the
    layers after it, so it grows as training grows those layers (a trained head at 5-10x its
    initial norm) while the loss falls. Neither is reported.

    ## Evidence
    `direction` (growth or decay), `layers` with `slopes` (orders per 1000 steps, one per layer),
    `change_orders`, `r2`, `loss_change_orders` and `excess_orders` (the gradient's change minus
    the loss's) of the steepest layer, `first_step`, `last_step`, `points`, and the thresholds.

    ## Thresholds
    `orders_per_1000_steps` = 1.0, `min_change_orders` = 1.0 (the norm moved tenfold over the
    window, or tenfold beyond the loss), `min_r2` = 0.6, `min_points` = 20, `window` = 100
    measured steps. A straight line fitted to n points of pure noise reaches r2 >= 0.6 with
    probability 2.4% at n = 8 (t = 3.0 on 6 degrees of freedom) but 6e-5 at n = 20 (t = 5.2):
    the monitor judges again at every measured step, so 8 points would raise a false trend
    every few dozen steps. The loss is falling when its fitted line drops at least
    `loss_fall_orders` = 0.05 orders (11%) with a slope `loss_fall_t` = 2 standard errors below
    zero. The rule abstains (an info finding, no verdict) on a steep gradient trend when the
    loop passed no loss to `monitor.step(loss)`: a falling gradient is then indistinguishable
    from convergence. A layer whose window holds a non-finite gradient is not fitted
    (`nonfinite-first-layer` reports where it started), nor one with fewer than `min_points`
    finite positive norms; steps whose loss is not finite or not positive are left out of the
    loss's line.

    ## Fixes
    clip: clip the gradient norm so a growing gradient cannot blow up the weights.
    lr: lower the learning rate (a growing gradient is often the optimizer overshooting).
    layernorm: normalise the layer's input so its scale cannot drift.
    init: re-check the initialisation of the layer whose gradient decays.

    ## Example
    `tests/test_trends.py` trains a small MLP on random labels (a flat loss) whose first
    layer's gradient is scaled by 2 ** (step / 50): reported with a slope of 6.0 orders per
    1000 steps (truth 6.02); the same model without the scale is not reported, nor is a
    learning MLP whose gradient falls tenfold with its loss (`tests/rules/test_trend_rules.py`).
    """
    if probe.history is None:
        return
    judged, no_loss = _judged(window(probe.history, int(limits.window)), limits)
    for direction, sign in (("growth", 1.0), ("decay", -1.0)):
        chosen = {name: j for name, j in judged.items() if _problem(j, sign, limits)}
        if chosen:
            yield _finding(direction, chosen, limits)
    if no_loss:
        yield _abstained(no_loss)


def _judged(history: History, limits: GradientTrendLimits) -> tuple[dict[str, Judged], dict[str, LogFit]]:
    """Steep layers with the loss's fit over their steps, and steep layers with no loss to judge by."""
    steps = history.step_numbers
    losses = {s.step: math.nan if s.loss is None else s.loss for s in history.steps}
    judged: dict[str, Judged] = {}
    no_loss: dict[str, LogFit] = {}
    for name in history.layer_names():
        values = history.layer_series(name, "grad_norm")
        if change_bound(steps, values) < limits.min_change_orders * (1 - 1e-6):
            continue  # no line through these values moves far enough to be steep: skip the fit
        bad = history.layer_series(name, "nonfinite")
        fit, _ = judged_fit(steps, values, bad, int(limits.min_points), limits.min_r2)
        if fit is None or not _steep(fit, limits):
            continue
        used = [(s, v) for s, v in positive_points(steps, values) if fit.first_step <= s <= fit.last_step]
        loss_points = positive_points([s for s, _ in used], [losses[s] for s, _ in used])
        loss = log_fit(loss_points) if len(loss_points) >= limits.min_points else None
        if loss is None:
            no_loss[name] = fit
        else:
            judged[name] = Judged(grad=fit, loss=loss, loss_t=_t(loss))
    return judged, no_loss


def _t(fit: LogFit) -> float:
    """The slope in standard errors: r * sqrt(n - 2) / sqrt(1 - r^2), signed as the slope."""
    r2 = min(max(fit.r2, 0.0), 1.0)
    sign = -1.0 if fit.orders_per_1000_steps < 0 else 1.0
    if r2 >= 1.0:
        return sign * math.inf
    return sign * math.sqrt(r2) * math.sqrt(max(fit.points - 2, 0)) / math.sqrt(1.0 - r2)


def _steep(fit: LogFit, limits: GradientTrendLimits) -> bool:
    return (
        abs(fit.orders_per_1000_steps) >= limits.orders_per_1000_steps
        and abs(fit.change_orders) >= limits.min_change_orders
        and fit.r2 >= limits.min_r2
    )


def _problem(j: Judged, sign: float, limits: GradientTrendLimits) -> bool:
    if sign > 0:  # growth: a problem while the loss does not fall
        return j.grad.change_orders >= limits.min_change_orders and not j.loss_falling(limits)
    return j.grad.change_orders <= -limits.min_change_orders and j.excess <= -limits.min_change_orders


def _finding(direction: str, judged: dict[str, Judged], limits: GradientTrendLimits) -> Finding:
    steepest_name, steepest = max(judged.items(), key=lambda kv: abs(kv[1].grad.orders_per_1000_steps))
    fit = steepest.grad
    verb = "grows" if direction == "growth" else "decays"
    factor = 10 ** abs(fit.change_orders)
    others = f" ({len(judged) - 1} more layers likewise)" if len(judged) > 1 else ""
    return Finding(
        id="gradient-trend",
        severity=Severity.WARNING,
        layers=tuple(judged),
        message=(
            f"The gradient of {steepest_name} {verb} {factor:.3g}x from step {fit.first_step} to "
            f"{fit.last_step} ({fit.orders_per_1000_steps:+.2f} orders of magnitude per 1000 "
            f"steps) while {_loss_words(direction, steepest)}{others}."
        ),
        evidence={
            "direction": direction,
            "layers": list(judged),
            "slopes": [round(j.grad.orders_per_1000_steps, 4) for j in judged.values()],
            "steepest": steepest_name,
            "change_orders": round(fit.change_orders, 4),
            "r2": round(fit.r2, 4),
            "loss_change_orders": round(steepest.loss_change, 4),
            "excess_orders": round(steepest.excess, 4),
            "first_step": fit.first_step,
            "last_step": fit.last_step,
            "points": fit.points,
            "orders_per_1000_steps": limits.orders_per_1000_steps,
            "min_change_orders": limits.min_change_orders,
            "min_r2": limits.min_r2,
            "min_points": int(limits.min_points),
            "loss_fall_orders": limits.loss_fall_orders,
            "window": int(limits.window),
        },
        suggestions=_suggestions(direction),
    )


def _loss_words(direction: str, j: Judged) -> str:
    change = j.loss_change
    if change <= -0.05 and direction == "decay":
        return f"the loss fell only {10**-change:.3g}x (the gradient fell {10**-j.excess:.3g}x more)"
    if change <= -0.05:
        return f"the loss fell only {10**-change:.3g}x, too little to tell from noise"
    if change >= 0.05:
        return f"the loss rose {10**change:.3g}x"
    return "the loss stayed flat"


def _abstained(no_loss: dict[str, LogFit]) -> Finding:
    name, fit = max(no_loss.items(), key=lambda kv: abs(kv[1].orders_per_1000_steps))
    verb = "grows" if fit.change_orders > 0 else "decays"
    return Finding(
        id="gradient-trend",
        severity=Severity.INFO,
        layers=(),
        message=(
            f"The gradient of {name} {verb} {10 ** abs(fit.change_orders):.3g}x from step {fit.first_step} "
            f"to {fit.last_step}, but no loss was recorded on those steps, so learning cannot be told from "
            "a problem: pass the loss to monitor.step(loss) for a verdict."
        ),
        evidence={
            "abstained": "no loss recorded",
            "layers": list(no_loss),
            "steepest": name,
            "change_orders": round(fit.change_orders, 4),
            "first_step": fit.first_step,
            "last_step": fit.last_step,
        },
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
