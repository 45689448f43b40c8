"""The monitor's SeriesBook answers every History question as a pass over the steps does.

Histories with layers and activations that come and go, duplicate names within a step, a
layer whose forward position changes, NaN and inf values, and a book trimmed many times over:
at each step, a History on the book and the same steps without it must agree exactly (series,
names and their order, latest points, total gradient norms), and so must every trend rule.
"""

from __future__ import annotations

import math
import random

from gradcheck_cli.judge.diagnose import diagnose
from gradcheck_cli.judge.rules.trends.series import change_bound, log_fit, positive_points
from gradcheck_cli.records.history import History, LayerPoint, StepStats, UnitPoint
from gradcheck_cli.records.series_book import LAYER_FIELDS, UNIT_FIELDS, SeriesBook
from gradcheck_cli.records.stats import ModelInfo, ProbeResult, RunInfo


def _value(rng: random.Random) -> float:
    roll = rng.random()
    if roll < 0.03:
        return math.nan
    if roll < 0.05:
        return math.inf
    if roll < 0.08:
        return 0.0
    return 10 ** rng.uniform(-6, 1)


def _step(rng: random.Random, step: int, names: list[str], units: list[str]) -> StepStats:
    present = [n for n in names if rng.random() > 0.15]
    if rng.random() < 0.1:
        rng.shuffle(present)
    if present and rng.random() < 0.05:
        present.append(present[0])  # a duplicate name within one step
    layers = tuple(
        LayerPoint(
            name=name,
            type="Linear",
            index=i if rng.random() > 0.05 else len(present) - i,
            grad_norm=_value(rng),
            weight_norm=_value(rng),
            grad_weight_ratio=_value(rng),
            zero_grad_fraction=rng.random(),
            nonfinite=int(rng.random() < 0.02),
        )
        for i, name in enumerate(present)
    )
    acts = tuple(
        UnitPoint(name=u, family="relu", after=None, dead_fraction=rng.random(), saturated_fraction=0.0)
        for u in units
        if rng.random() > 0.2
    )
    loss = _value(rng) if rng.random() > 0.1 else None
    return StepStats(step=step, loss=loss, seconds=0.0, layers=layers, units=acts)


def _same(a: tuple[float, ...] | None, b: tuple[float, ...] | None) -> bool:
    if a is None or b is None:
        return a is b
    return len(a) == len(b) and all(
        x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True)
    )


def _agree(booked: History, plain: History) -> None:
    assert booked.layer_names() == plain.layer_names()
    assert booked.unit_names() == plain.unit_names()
    for name in (*plain.layer_names(), "never-seen"):
        for field in LAYER_FIELDS:
            assert _same(booked.layer_series(name, field), plain.layer_series(name, field)), (name, field)
        assert booked.layer(name) == plain.layer(name)
    for name in (*plain.unit_names(), "never-seen"):
        for field in UNIT_FIELDS:
            assert _same(booked.unit_series(name, field), plain.unit_series(name, field)), (name, field)
        assert booked.unit(name) == plain.unit(name)


def _plain_totals(history: History) -> tuple[float, ...]:
    layers = [history.layer_series(n, "grad_norm") for n in history.layer_names()]
    out = []
    for column in zip(*layers, strict=True):
        present = [v for v in column if not math.isnan(v)]
        out.append(math.sqrt(math.fsum(v * v for v in present)) if present else math.nan)
    return tuple(out)


def test_book_answers_as_the_steps_do_through_many_trims() -> None:
    rng = random.Random(7)
    keep = 25
    book = SeriesBook(keep=keep)
    names = [f"layer{i}" for i in range(6)]
    units = ["relu0", "relu1"]
    kept: list[StepStats] = []
    for step in range(0, 300, 3):
        if rng.random() < 0.05:
            names.append(f"late{step}")  # a layer that appears mid-run
        if rng.random() < 0.05 and len(names) > 2:
            names.pop(rng.randrange(len(names)))  # one that goes away
        stats = _step(rng, step, names, units)
        book.append(stats)
        kept = [*kept, stats][-keep:]
        booked = History(steps=tuple(kept), book=book, book_end=book.count)
        plain = History(steps=tuple(kept))
        _agree(booked, plain)
        for width in (1, 5, keep):
            _agree(booked.last(width), plain.last(width))
            assert _same(booked.last(width).total_grad_norms(), _plain_totals(plain.last(width)))
            worst = tuple(
                max((float(p.nonfinite) for p in s.layers), default=-math.inf) for s in kept[-width:]
            )
            assert booked.last(width).worst_nonfinite() == worst
    assert book.first > 0  # the book was trimmed


def test_a_stale_or_foreign_history_falls_back_to_the_steps() -> None:
    rng = random.Random(3)
    book = SeriesBook(keep=10)
    steps = [_step(rng, i, ["a", "b"], ["r"]) for i in range(8)]
    for stats in steps:
        book.append(stats)
    old = History(steps=tuple(steps[:5]), book=book, book_end=5)  # built before 3 more steps
    assert old.total_grad_norms() is None
    _agree(old, History(steps=tuple(steps[:5])))
    misaligned = History(steps=tuple(steps[1:6]), book=book, book_end=book.count)
    assert misaligned.total_grad_norms() is None  # the step numbers do not match the book's
    _agree(misaligned, History(steps=tuple(steps[1:6])))


def _run(history: History) -> ProbeResult:
    info = ModelInfo(class_name="Net", parameters=1, trainable=1, device="cpu", dtype="float32")
    run = RunInfo(batches=1, steps=0, seed=0, loss="training loop")
    return ProbeResult(model=info, run=run, layers=(), history=history)


def test_trend_rules_find_the_same_on_the_book() -> None:
    """A layer whose gradient grows tenfold every 25 steps, a spike, a ReLU dying, a non-finite
    gradient at step 150: the rules' findings from the book equal those from the steps."""
    book = SeriesBook(keep=120)
    kept: list[StepStats] = []
    rng = random.Random(1)
    compared = 0
    seen: set[str] = set()
    for step in range(160):
        grow = 1e-3 * 10 ** (step / 25) * 10 ** rng.gauss(0, 0.02)
        spike = 50.0 if step == 140 else 1.0
        layers = tuple(
            LayerPoint(
                name=n,
                type="Linear",
                index=i,
                grad_norm=g * spike,
                weight_norm=1.0,
                grad_weight_ratio=g * spike,
                zero_grad_fraction=0.0,
                nonfinite=int(n == "flat" and step == 150),
            )
            for i, (n, g) in enumerate((("grows", grow), ("flat", 0.1 * 10 ** rng.gauss(0, 0.02))))
        )
        dead = min(0.9, step / 150)
        unit = UnitPoint(name="relu", family="relu", after="flat", dead_fraction=dead, saturated_fraction=0)
        stats = StepStats(step=step, loss=1.0 * spike, seconds=0.0, layers=layers, units=(unit,))
        book.append(stats)
        kept = [*kept, stats][-120:]
        if step % 7 and step < 139:
            continue
        booked = diagnose(_run(History(steps=tuple(kept), book=book, book_end=book.count))).findings
        plain = diagnose(_run(History(steps=tuple(kept)))).findings
        assert booked == plain
        compared += bool(plain)
        seen |= {f.id for f in plain}
    assert compared > 5
    assert {"gradient-trend", "loss-spike", "nonfinite-first-layer"} <= seen


def test_the_change_bound_is_never_below_the_fitted_change() -> None:
    """gradient-trend skips the fit of a layer whose change_bound is below the threshold: on
    random series (noise, steep lines, steps with gaps) the bound is never below |change|."""
    rng = random.Random(5)
    tight = 0
    for _ in range(2000):
        n = rng.randrange(2, 60)
        steps = sorted(rng.sample(range(0, 400), n))
        slope, noise = rng.choice((0.0, 0.001, 0.01, 0.05)), rng.choice((0.0, 0.01, 0.3, 1.0))
        values = [10 ** (slope * s + rng.gauss(0, noise) - 3) for s in steps]
        fit = log_fit(positive_points(steps, values))
        bound = change_bound(steps, values)
        if fit is None:
            continue
        assert abs(fit.change_orders) <= bound * (1 + 1e-9) + 1e-12, (steps, values)
        tight += abs(fit.change_orders) > 0.5 * bound
    assert tight > 100  # the bound is not vacuous
    assert change_bound([1, 2, 3], [1.0, math.nan, 2.0]) == math.inf
    assert change_bound([1, 2, 3], [1.0, 0.0, 2.0]) == math.inf
