"""Trend rules on hand-built histories: closed-form slopes, seeded noise, steps in the evidence."""

from __future__ import annotations

import math
import random

import pytest

from gradcheck_cli.judge.diagnose import diagnose
from gradcheck_cli.judge.rules import trend_rules
from gradcheck_cli.records.history import History, LayerPoint, StepStats, UnitPoint
from gradcheck_cli.records.stats import ModelInfo, ProbeResult, RunInfo
from tests.rules.rule_factories import probe as single_probe
from tests.rules.rule_factories import stack

TREND_IDS = {
    "gradient-trend",
    "nonfinite-first-layer",
    "ratio-drift",
    "dead-units-growing",
    "loss-spike",
    "grad-norm-spike",
    "warmup-missing",
}
LOOP_IDS = {
    "not-in-optimizer",
    "zero-grad-missing",
    "training-stalled",
    "frozen-mid-run",
    "grad-scaler-skips",
    "eval-mode-training",
    "accumulation-undivided",
    "clip-after-step",
}


def point(name: str, index: int, grad: float = 0.1, weight: float = 1.0, nonfinite: int = 0) -> LayerPoint:
    ratio = grad / weight if weight else math.nan
    return LayerPoint(
        name=name,
        type="Linear",
        index=index,
        grad_norm=grad,
        weight_norm=weight,
        grad_weight_ratio=ratio,
        zero_grad_fraction=0.0,
        nonfinite=nonfinite,
    )


def run_of(steps: list[StepStats]) -> ProbeResult:
    info = ModelInfo(class_name="Net", parameters=1, trainable=1, device="cpu", dtype="float32")
    return ProbeResult(
        model=info,
        run=RunInfo(batches=1, steps=0, seed=0, loss="training loop"),
        layers=(),
        history=History(steps=tuple(steps)),
    )


def findings(steps: list[StepStats], rule_id: str) -> list:  # type: ignore[type-arg]
    return [f for f in diagnose(run_of(steps)).findings if f.id == rule_id]


def growing_history(every: int = 10, total: int = 400, noise: float = 0.05, seed: int = 0) -> list[StepStats]:
    rng = random.Random(seed)
    out = []
    for step in range(0, total, every):
        jitter = lambda: 10 ** rng.gauss(0, noise)  # noqa: E731
        grows = 0.01 * 2 ** (step / 50) * jitter()
        out.append(
            StepStats(
                step=step,
                loss=1.0,
                seconds=0.0,
                layers=(point("enc", 0, grows), point("head", 1, 0.1 * jitter())),
            )
        )
    return out


def test_every_trend_rule_is_registered_and_needs_history() -> None:
    assert {spec.id for spec in trend_rules()} == TREND_IDS | LOOP_IDS


def test_a_gradient_doubling_every_50_steps_is_reported_with_its_slope() -> None:
    (found,) = findings(growing_history(), "gradient-trend")
    truth = math.log10(2) * 20  # 6.02 orders per 1000 steps
    assert found.evidence["direction"] == "growth"
    assert found.layers == ("enc",)
    assert found.evidence["slopes"][0] == pytest.approx(truth, rel=0.10)
    assert (found.evidence["first_step"], found.evidence["last_step"]) == (0, 390)


@pytest.mark.parametrize("seed", range(5))
def test_stationary_noise_is_not_a_trend(seed: int) -> None:
    rng = random.Random(seed)
    steps = [
        StepStats(step=s, loss=1.0, seconds=0.0, layers=(point("enc", 0, 0.1 * 10 ** rng.gauss(0, 0.3)),))
        for s in range(0, 1000, 10)
    ]
    assert findings(steps, "gradient-trend") == []


def test_decay_is_its_own_finding_and_the_window_limits_the_fit() -> None:
    steps = [
        StepStats(step=s, loss=1.0, seconds=0.0, layers=(point("enc", 0, 10 ** (-s / 100)),))
        for s in range(0, 300, 10)
    ]
    (found,) = findings(steps, "gradient-trend")
    assert found.evidence["direction"] == "decay"
    assert found.evidence["slopes"][0] == pytest.approx(-10.0, rel=1e-6)
    probe = run_of(steps)
    spec = next(s for s in trend_rules() if s.id == "gradient-trend")
    windowed = list(spec.check(probe, spec.limits({"window": 24})))
    assert windowed[0].evidence["first_step"] == 60
    assert not list(spec.check(probe, spec.limits({"window": 12})))  # 12 points: too few to trust


def loss_run(grad: float, loss: float | None, steps: int = 40, noise: float = 0.0) -> list[StepStats]:
    """A layer's gradient and the loss, each moving `grad`/`loss` orders of magnitude over the run."""
    rng = random.Random(3)
    out = []
    for s in range(steps):
        frac = s / (steps - 1)
        value = None if loss is None else 1.5 * 10 ** (loss * frac + rng.gauss(0, noise))
        out.append(
            StepStats(step=s, loss=value, seconds=0.0, layers=(point("fc1", 0, 0.1 * 10 ** (grad * frac)),))
        )
    return out


def test_a_gradient_falling_with_the_loss_is_learning_not_a_trend() -> None:
    # cross-entropy: the gradient at the logits is p - y, its size falls with the loss
    assert findings(loss_run(grad=-1.5, loss=-1.5), "gradient-trend") == []
    assert findings(loss_run(grad=-1.2, loss=-0.5), "gradient-trend") == []  # 0.7 orders beyond it
    (found,) = findings(loss_run(grad=-2.0, loss=-0.5), "gradient-trend")  # 1.5 orders beyond
    assert found.evidence["direction"] == "decay"
    assert found.evidence["excess_orders"] == pytest.approx(-1.5, abs=1e-6)
    assert "the loss fell only 3.16x (the gradient fell 31.6x more)" in found.message


def test_a_gradient_growing_while_the_loss_falls_is_learning() -> None:
    assert findings(loss_run(grad=1.2, loss=-0.6), "gradient-trend") == []
    (flat,) = findings(loss_run(grad=1.2, loss=0.0, noise=0.02), "gradient-trend")
    assert flat.evidence["direction"] == "growth" and "the loss stayed flat" in flat.message
    (rising,) = findings(loss_run(grad=1.2, loss=0.3), "gradient-trend")
    assert "the loss rose 2x" in rising.message


def test_without_a_loss_the_rule_abstains_and_says_so() -> None:
    (found,) = findings(loss_run(grad=-2.0, loss=None), "gradient-trend")
    assert found.severity.value == "info" and found.evidence["abstained"] == "no loss recorded"
    assert "monitor.step(loss)" in found.message


def test_first_nonfinite_layer_and_the_loss_lag() -> None:
    steps = []
    for s in range(10):
        bad = s >= 4
        layers = (
            point("enc", 0, nonfinite=5 if s >= 5 else 0),
            point("mid", 1, nonfinite=3 if bad else 0),
            point("head", 2),
        )
        steps.append(StepStats(step=s * 2, loss=math.nan if s >= 6 else 1.0, seconds=0.0, layers=layers))
    (found,) = findings(steps, "nonfinite-first-layer")
    assert found.evidence["first_step"] == 8 and found.evidence["first_layer"] == "mid"
    assert found.evidence["loss_nonfinite_step"] == 12 and found.evidence["steps_before_loss"] == 4
    assert "step 8" in found.message and "4 steps before the loss" in found.message


def test_nonfinite_first_layer_with_the_loss_still_finite_or_not_given() -> None:
    steps = [
        StepStats(step=s, loss=None, seconds=0.0, layers=(point("enc", 0, nonfinite=int(s >= 3)),))
        for s in range(5)
    ]
    (found,) = findings(steps, "nonfinite-first-layer")
    assert found.evidence["steps_before_loss"] is None and "still finite at step 4" in found.message


def test_ratio_drifting_out_of_range() -> None:
    down = [
        StepStats(step=s, loss=1.0, seconds=0.0, layers=(point("enc", 0, grad=1e-3 * 10 ** (-s / 8)),))
        for s in range(40)
    ]
    (found,) = findings(down, "ratio-drift")
    assert found.evidence["direction"] == "down" and found.evidence["recent_ratio"] < 1e-6
    assert found.evidence["early_steps"] == [0, 7] and found.evidence["recent_steps"] == [32, 39]
    steady = [
        StepStats(step=s, loss=1.0, seconds=0.0, layers=(point("enc", 0, grad=1e-3 * (1 + 0.3 * (s % 3))),))
        for s in range(40)
    ]
    assert findings(steady, "ratio-drift") == []


def unit_step(step: int, dead: float) -> StepStats:
    unit = UnitPoint(name="act1", family="relu", after="fc1", dead_fraction=dead, saturated_fraction=0.0)
    return StepStats(step=step, loss=1.0, seconds=0.0, layers=(point("fc1", 0),), units=(unit,))


def test_dead_units_accumulating() -> None:
    climbing = [unit_step(s * 10, 0.05 + 0.55 * s / 29) for s in range(30)]
    (found,) = findings(climbing, "dead-units-growing")
    assert found.layers == ("fc1",) and found.evidence["recent_dead"] > 0.5 > found.evidence["early_dead"]
    assert found.evidence["recent_steps"][1] == 290
    assert findings([unit_step(s * 10, 0.3) for s in range(30)], "dead-units-growing") == []


def test_a_single_analysis_never_gets_a_trend_finding() -> None:
    probe = single_probe(stack([1.0] * 4, nonfinite=2))
    ids = {f.id for f in diagnose(probe).findings}
    assert "nonfinite-gradients" in ids and not ids & TREND_IDS


def test_too_short_a_history_is_silent() -> None:
    assert findings(growing_history(total=60), "gradient-trend") == []
