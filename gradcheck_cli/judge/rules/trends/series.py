"""Small numerics over a history's series: windows, least-squares slopes, edge medians."""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from gradcheck_cli.records.history import History


@dataclass(frozen=True, slots=True, kw_only=True)
class LogFit:
    """Least squares of log10(value) against the step number."""

    orders_per_1000_steps: float
    r2: float
    """The share of the log-values' variance the straight line explains."""
    points: int
    first_step: int
    last_step: int

    @property
    def change_orders(self) -> float:
        """Orders of magnitude the fitted line climbs (or falls) from the first step to the last."""
        return self.orders_per_1000_steps * (self.last_step - self.first_step) / 1000


_ZERO = 0.0
"""`any(map(_ZERO.__lt__, counts))`: is any count above zero (NaN is not), without a Python loop."""


def window(history: History, points: int) -> History:
    """The last `points` measured steps."""
    return history.last(points)


def positive_points(steps: Sequence[int], values: Sequence[float]) -> list[tuple[int, float]]:
    """(step, value) pairs whose value is finite and above zero (a log needs both)."""
    return [(s, v) for s, v in zip(steps, values, strict=True) if math.isfinite(v) and v > 0]


def log_fit(points: Sequence[tuple[int, float]]) -> LogFit | None:
    """The slope of log10(value) per 1000 steps; None with fewer than 2 distinct steps."""
    xs = [float(s) for s, _ in points]
    ys = [math.log10(v) for _, v in points]
    if len(set(xs)) < 2:
        return None
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    # list comprehensions, not generators: the same sums in the same order, at half the cost
    # (a monitor measuring every step fits every layer at every step)
    sxx = sum([(x - mean_x) ** 2 for x in xs])
    sxy = sum([(x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)])
    syy = sum([(y - mean_y) ** 2 for y in ys])
    slope = sxy / sxx
    r2 = 1.0 if syy == 0 else (slope * sxy) / syy
    return LogFit(
        orders_per_1000_steps=slope * 1000,
        r2=r2,
        points=len(xs),
        first_step=int(xs[0]),
        last_step=int(xs[-1]),
    )


def change_bound(steps: Sequence[int], values: Sequence[float]) -> float:
    """An upper bound on |change_orders| of the line log_fit fits through these values (inf: none).

    With n points all finite and positive, |slope| = |sxy| / sxx <= sqrt(syy / sxx) (Cauchy-
    Schwarz), and syy <= n (ymax - ymin)^2 / 4 (a variance is at most a quarter of the squared
    range), so the line moves at most (ymax - ymin) (last - first) sqrt(n / (4 sxx)) orders: from
    a max, a min and one sum over the steps shared by every layer. A monitor judging every step
    skips the fit of each layer that cannot move far enough (most of them, on a healthy run)."""
    if len(values) < 2:
        return math.inf
    total = sum(values)  # NaN or inf when any value is
    if not math.isfinite(total) or min(values) <= 0:
        return math.inf
    sxx = _sxx(tuple(steps))
    if sxx <= 0:
        return math.inf
    spread = math.log10(max(values)) - math.log10(min(values))
    return spread * (steps[-1] - steps[0]) * math.sqrt(len(values) / (4 * sxx))


@functools.lru_cache(maxsize=8)
def _sxx(steps: tuple[int, ...]) -> float:
    xs = [float(s) for s in steps]
    mean = statistics.fmean(xs)
    return sum([(x - mean) ** 2 for x in xs])


@dataclass(frozen=True, slots=True, kw_only=True)
class Edges:
    """Medians of a series' first and last few finite points, and the steps they span."""

    early: float
    recent: float
    early_steps: tuple[int, int]
    recent_steps: tuple[int, int]


def edges(steps: Sequence[int], values: Sequence[float], min_points: int) -> Edges | None:
    """Early and recent medians over a fifth of the finite points each (at least 3)."""
    points = [(s, v) for s, v in zip(steps, values, strict=True) if math.isfinite(v)]
    if len(points) < max(min_points, 6):
        return None
    k = max(3, len(points) // 5)
    head, tail = points[:k], points[-k:]
    return Edges(
        early=statistics.median(v for _, v in head),
        recent=statistics.median(v for _, v in tail),
        early_steps=(head[0][0], head[-1][0]),
        recent_steps=(tail[0][0], tail[-1][0]),
    )


def judged_fit(
    steps: Sequence[int], values: Sequence[float], nonfinite: Sequence[float], min_points: int, min_r2: float
) -> tuple[LogFit | None, str]:
    """A slope only on enough evidence: (the fit, "") or (None, why it abstains).

    A series that went non-finite has no trend to report (its last finite values are the
    blow-up, and a slope through them reads as thousands of orders per 1000 steps): the
    non-finite rules say where it started. Fewer than `min_points` finite positive values, or
    a line that explains less than `min_r2` of the variance (noise), is no trend either."""
    bad = None
    if math.inf in values or -math.inf in values or any(map(_ZERO.__lt__, nonfinite)):  # the rare case
        bad = next(s for s, v, n in zip(steps, values, nonfinite, strict=True) if math.isinf(v) or n > 0)
    if bad is not None:
        return None, f"went non-finite at step {bad}"
    points = positive_points(steps, values)
    if len(points) < min_points:
        return None, f"{len(points)} finite steps (a slope needs {min_points})"
    fit = log_fit(points)
    if fit is None:
        return None, "one step"
    if fit.r2 < min_r2:
        return None, f"noise, not a trend (r² {fit.r2:.2f} < {min_r2:g})"
    return fit, ""
