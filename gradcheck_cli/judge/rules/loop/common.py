"""What the loop rules share: the measured steps that carry a loop record, and loss flatness."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from gradcheck_cli.records.history import History, StepStats


def watched(history: History | None) -> list[StepStats]:
    """The measured steps with a loop record, in order."""
    if history is None:
        return []
    return [s for s in history.steps if s.loop is not None]


def grad_norm(stats: StepStats, layer: str) -> float:
    point = next((p for p in stats.layers if p.name == layer), None)
    return math.nan if point is None else point.grad_norm


def loss_drop(steps: Sequence[StepStats]) -> float | None:
    """The relative fall of the median loss from the first half of `steps` to the second
    (0.3: it fell by 30%; negative: it rose); None without a finite loss in both halves."""
    losses = [s.loss for s in steps]
    half = len(losses) // 2
    early = [v for v in losses[: max(1, half)] if v is not None and math.isfinite(v)]
    late = [v for v in losses[half:] if v is not None and math.isfinite(v)]
    if not early or not late:
        return None
    before = statistics.median(early)
    return 0.0 if before == 0 else (before - statistics.median(late)) / abs(before)


def span(steps: Sequence[StepStats]) -> str:
    return f"step {steps[0].step}" if len(steps) == 1 else f"steps {steps[0].step}-{steps[-1].step}"
