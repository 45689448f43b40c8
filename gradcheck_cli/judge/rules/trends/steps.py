"""One view of a training run's steps for the per-step rules, from the monitor or from --steps.

The monitor's History (GradientMonitor, callbacks, `gradcheck report`) and the --steps
TrainingHistory record the same things under different shapes; the spike rules read this
view so they judge both the same way. Sums are Python floats (float64): a float32 norm of a
layer that blew up would overflow on its own.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from gradcheck_cli.records.history import History
from gradcheck_cli.records.stats import ProbeResult


@dataclass(frozen=True, slots=True, kw_only=True)
class StepSeries:
    source: str
    """"--steps" or "monitor"."""
    steps: tuple[int, ...]
    loss: tuple[float, ...]
    """NaN where no loss was recorded."""
    layers: dict[str, tuple[float, ...]]
    """Layer -> its parameter-gradient norm per step (NaN where absent), in forward order."""
    total: tuple[float, ...]
    """The whole model's gradient norm per step (float64 from the layers' norms)."""


def step_series(probe: ProbeResult, last: int) -> StepSeries | None:
    """The run's per-step series over its `last` recorded steps: the monitor's history first,
    else --steps' training. The monitor judges at every measured step, so the cost stays bounded."""
    if probe.history is not None and probe.history.steps:
        h = History(steps=probe.history.steps[-max(1, last) :])
        layers = {name: h.layer_series(name, "grad_norm") for name in h.layer_names()}
        loss = tuple(math.nan if s.loss is None else s.loss for s in h.steps)
        return StepSeries(
            source="monitor", steps=h.step_numbers, loss=loss, layers=layers, total=_total(layers)
        )
    t = probe.training
    if t is None or not t.loss:
        return None
    steps = tuple(range(1, len(t.loss) + 1))[-last:]
    layers = {name: tuple(v)[-last:] for name, v in t.grad_norms.items() if len(v) == len(t.loss)}
    total = tuple(t.total_grad_norm)[-last:] if len(t.total_grad_norm) == len(t.loss) else _total(layers)
    return StepSeries(source="--steps", steps=steps, loss=tuple(t.loss)[-last:], layers=layers, total=total)


def _total(layers: dict[str, tuple[float, ...]]) -> tuple[float, ...]:
    columns = list(zip(*layers.values(), strict=True)) if layers else []
    out = []
    for column in columns:
        present = [v for v in column if not math.isnan(v)]
        out.append(math.sqrt(math.fsum(v * v for v in present)) if present else math.nan)
    return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class Spike:
    index: int
    """Position in the series."""
    z: float
    """Standard deviations of log10(value) above the rolling window's mean."""
    factor: float
    """The value over the rolling window's median."""


def log_spikes(
    values: Sequence[float], window: int, min_points: int, z_min: float, factor_min: float, floor: float
) -> list[Spike]:
    """ZClip-style spikes: z-score of log10(value) against the previous `window` finite values.

    A point is a spike when z >= `z_min` and the value is at least `factor_min` times the window's
    median; the window's standard deviation is floored at `floor` orders (a flat series would give
    any wobble an infinite z). Needs `min_points` finite values in the window (else abstains);
    spikes are not added to the window (so one spike does not hide the next)."""
    out: list[Spike] = []
    history: list[float] = []
    for i, value in enumerate(values):
        if not (math.isfinite(value) and value > 0):
            continue
        logv = math.log10(value)
        recent = history[-window:]
        if len(recent) >= min_points:
            mean = sum(recent) / len(recent)
            std = max(math.sqrt(sum((x - mean) ** 2 for x in recent) / len(recent)), floor)
            z = (logv - mean) / std
            ordered = sorted(recent)
            mid = len(ordered) // 2
            middle = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
            factor = 10 ** (logv - middle)
            if z >= z_min and factor >= factor_min:
                out.append(Spike(index=i, z=z, factor=factor))
                continue
        history.append(logv)
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Rise:
    layer: str
    index: int
    factor: float
    """The layer's gradient norm at `index` over its median on the steps before."""


def first_rise(series: StepSeries, end: int, lookback: int, window: int, factor_min: float) -> Rise | None:
    """The layer whose gradient norm rose first (at least `factor_min` times its median over the
    `window` finite steps before) in the `lookback` steps up to position `end`; ties go to the
    larger rise."""
    best: Rise | None = None
    for name, values in series.layers.items():
        for i in range(max(1, end - lookback), end + 1):
            before = [v for v in values[max(0, i - window) : i] if math.isfinite(v) and v > 0]
            value = values[i]
            if len(before) < 3 or not (math.isfinite(value) and value > 0):
                continue
            factor = value / statistics.median(before)
            if factor >= factor_min:
                if best is None or i < best.index or (i == best.index and factor > best.factor):
                    best = Rise(layer=name, index=i, factor=factor)
                break
    return best
