"""--lr-headroom: which multiplier broke, on which instrument, at which layer (torch-free).

Each run takes k steps on the same batch from the same initial state, at the learning rate
times a multiplier m; the smallest multiplier is the reference run (1 by default). A run
*breaks* on its loss or on an instrument.

The loss breaks a run when it goes non-finite (with any output, gradient or weight), rises
above LOSS_FACTOR (10) times its first value, or stalls: the run ends (mean of its last
END_STEPS losses) above its first loss minus STALL (half) of the progress the reference run
made, i.e. the larger rate learned less than half of what the reference learned on the same
batch (a rate past the edge of stability: Adam's oscillating updates, SGD bouncing across the
valley).

An instrument breaks a run when its *excursion* grows super-linearly: more than FACTOR (3)
times what the reference run's excursion predicts, and more than a floor that says the change
matters at all. What is predicted depends on what the instrument measures:

- update_ratio (per layer, a per-step quantity): the largest ||W_after - W_before|| /
  ||W_before|| of one step. Linear in the learning rate for SGD and Adam alike, so the
  prediction is (m / m_ref) times the reference's. Floor 1e-3.
- the state of the model (its attention and output logits) moves with what the run has
  learned: a run that reaches the reference's final loss sooner should have moved them about
  as far as the reference did by its end. The excursion is taken up to the step at which the
  run first reaches the reference's final loss (its whole length if it never does), and the
  prediction is the reference's excursion over its whole run. Growth beyond it is growth that
  learning does not explain:
  - attention_max_logit (per head): the largest rise max_t x_t - x_0, in logit units; floor
    10 (a preference of e^10, over 20000 to 1: a head that can only look at one key).
  - attention_entropy (per head, normalised to [0, 1]): the largest drop H_0 - H_t; floor 0.25.
  - logit_rms (the output): the largest rise max_t x_t - x_0 of the RMS; floor 2.
  - log_partition (the output's mean logsumexp over its last dimension): the largest
    |z_t - z_0|; floor 2 nats (the partition function 7 times its first value).

The *limit* is the smallest multiplier whose run broke; its *first instrument* is the one that
passed its bound at the earliest step (a stall counts at the last step; ties: the loss, then
the one furthest past its bound), and its *layer* where that happened.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gradcheck_cli.records.headroom import HeadroomRun, LrHeadroom, Peak, Trip

FACTOR = 3.0
"""Super-linear: an excursion more than this many times what linear growth predicts."""
LOSS_FACTOR = 10.0
"""Diverged: the loss above this many times its value at the first step."""
STALL = 0.5
"""Stalled: the run's final loss kept less than this share of the reference run's progress."""
END_STEPS = 3
"""The final loss is the mean of this many last steps (one step of noise is not the end)."""
FLOORS = {
    "update_ratio": 1e-3,
    "attention_max_logit": 10.0,
    "logit_rms": 2.0,
    "log_partition": 2.0,
    "attention_entropy": 0.25,
}


def _absolute(values: Sequence[float]) -> list[float]:
    return [abs(v - values[0]) for v in values]


def _drop(values: Sequence[float]) -> list[float]:
    return [values[0] - v for v in values]


def _itself(values: Sequence[float]) -> list[float]:
    return list(values)


CHANGE: dict[str, Callable[[Sequence[float]], list[float]]] = {
    "update_ratio": _itself,
    "attention_max_logit": _absolute,
    "logit_rms": _absolute,
    "log_partition": _absolute,
    "attention_entropy": _drop,
}


def running_excursion(instrument: str, values: Sequence[float]) -> list[float]:
    """The excursion up to each step (a running maximum; non-finite values are skipped)."""
    if not values:
        return []
    out, best = [], 0.0
    for change in CHANGE[instrument](values):
        if math.isfinite(change):
            best = max(best, change)
        out.append(best)
    return out


def excursion(instrument: str, values: Sequence[float]) -> float:
    running = running_excursion(instrument, values)
    return running[-1] if running else 0.0


@dataclass(frozen=True, slots=True)
class _Reference:
    multiplier: float
    excursions: dict[tuple[str, str], float]
    final_loss: float
    progress: float
    """The reference run's first loss minus its final loss."""


def _reference(run: HeadroomRun) -> _Reference:
    final = _end(run.loss)
    return _Reference(
        multiplier=run.multiplier,
        excursions={(s.instrument, s.layer): excursion(s.instrument, s.values) for s in run.series},
        final_loss=final,
        progress=run.loss[0] - final if run.loss else math.nan,
    )


def judge_runs(
    runs: Sequence[HeadroomRun], base: LrHeadroom, factor: float = FACTOR, loss_factor: float = LOSS_FACTOR
) -> LrHeadroom:
    """`base` with each run's trips and peaks, and the limit, first instrument, layer and step."""
    ordered = sorted(runs, key=lambda r: r.multiplier)
    if not ordered:
        return base
    reference = _reference(ordered[0])
    judged = [_judge(run, reference, factor, loss_factor) for run in ordered]
    broken = next((run for run in judged if run.trips), None)
    first = broken.trips[0] if broken is not None else None
    return LrHeadroom(
        lr=base.lr,
        optimizer=base.optimizer,
        optimizer_source=base.optimizer_source,
        steps=base.steps,
        multipliers=tuple(r.multiplier for r in judged),
        runs=tuple(judged),
        limit=broken.multiplier if broken is not None else None,
        first_instrument=first.instrument if first else None,
        layer=first.layer if first else None,
        step=first.step if first else None,
        criteria={
            "factor": factor,
            "loss_factor": loss_factor,
            "stall": STALL,
            "end_steps": END_STEPS,
            **{f"floor_{k}": v for k, v in FLOORS.items()},
        },
    )


def _judge(run: HeadroomRun, ref: _Reference, factor: float, loss_factor: float) -> HeadroomRun:
    is_reference = run.multiplier == ref.multiplier
    trips = _loss_trip(run, loss_factor)
    if not trips and not is_reference:
        trips = _stall_trip(run, ref.progress)
    matched = _matched_step(run.loss, ref.final_loss)
    peaks: dict[str, Peak] = {}
    for s in run.series:
        running = running_excursion(s.instrument, s.values)
        if not running:
            continue
        peak = peaks.get(s.instrument)
        if peak is None or running[-1] > peak.excursion:
            peaks[s.instrument] = Peak(instrument=s.instrument, layer=s.layer, excursion=running[-1])
        if is_reference:
            continue  # the reference is what growth is measured from
        trip = _instrument_trip(s.instrument, s.layer, running, run.multiplier, ref, factor, matched)
        if trip is not None:
            trips.append(trip)
    trips.sort(key=lambda t: (t.step, -_beyond(t)))
    return HeadroomRun(
        multiplier=run.multiplier,
        lr=run.lr,
        loss=run.loss,
        nonfinite_step=run.nonfinite_step,
        series=run.series,
        peaks=tuple(peaks.values()),
        trips=tuple(trips),
    )


def _matched_step(loss: tuple[float, ...], target: float) -> int:
    """The first step (1-based) at which the loss is at or below `target`; the last if never."""
    return next((t for t, value in enumerate(loss, start=1) if value <= target), max(len(loss), 1))


def _instrument_trip(
    instrument: str,
    layer: str,
    running: list[float],
    multiplier: float,
    ref: _Reference,
    factor: float,
    matched: int,
) -> Trip | None:
    base = ref.excursions.get((instrument, layer), 0.0)
    if instrument == "update_ratio":
        allowed, window = factor * (multiplier / ref.multiplier) * base, running
    else:  # the state instruments: up to the step that matched the reference's progress
        allowed, window = factor * base, running[: max(matched, 1)]
    allowed = max(allowed, FLOORS[instrument])
    step = next((t for t, e in enumerate(window, start=1) if e > allowed), None)
    if step is None:
        return None
    return Trip(instrument=instrument, layer=layer, step=step, excursion=window[-1], allowed=allowed)


def _beyond(trip: Trip) -> float:
    """How far past its bound a trip went (a diverged loss first among trips at the same step)."""
    if trip.instrument == "loss":
        return math.inf
    return trip.excursion / trip.allowed if trip.allowed > 0 else math.inf


def _loss_trip(run: HeadroomRun, loss_factor: float) -> list[Trip]:
    """The loss diverged: non-finite at some step, or above loss_factor times the first step's."""
    first = run.loss[0] if run.loss else math.nan
    for t, value in enumerate(run.loss, start=1):
        if math.isfinite(first) and first > 0 and value > loss_factor * first:
            return [_diverged(t, value / first, loss_factor)]
    if run.nonfinite_step is not None:
        return [_diverged(run.nonfinite_step, math.inf, loss_factor)]
    return []


def _end(loss: tuple[float, ...]) -> float:
    tail = loss[-END_STEPS:]
    return sum(tail) / len(tail) if tail else math.nan


def _stall_trip(run: HeadroomRun, progress: float) -> list[Trip]:
    """The run ended keeping less than STALL of the reference's progress (the reference made some)."""
    if not (run.loss and math.isfinite(progress) and progress > 0):
        return []
    kept = (run.loss[0] - _end(run.loss)) / progress
    if kept >= STALL:
        return []
    return [
        Trip(
            instrument="loss", layer="loss", step=len(run.loss), excursion=kept, allowed=STALL, how="stalled"
        )
    ]


def _diverged(step: int, ratio: float, loss_factor: float) -> Trip:
    return Trip(instrument="loss", layer="loss", step=step, excursion=ratio, allowed=loss_factor)
