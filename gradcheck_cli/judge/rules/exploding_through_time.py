"""exploding-through-time: the gradient grows as it goes back in time."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import RECURRENT, rule
from gradcheck_cli.judge.rules.profile import orders, sig
from gradcheck_cli.judge.rules.profile import where as where_of
from gradcheck_cli.judge.rules.vanishing_through_time import signature
from gradcheck_cli.records.findings import Finding, LayerStatus, Severity, Suggestion
from gradcheck_cli.records.stats import ProbeResult


@dataclass(frozen=True, slots=True)
class ExplodingTimeLimits:
    orders: float = 3.0
    """Fire when the gradient at the first step is this many orders above the last step's."""
    min_steps: int = 8


@rule(
    id="exploding-through-time",
    severity=Severity.ERROR,
    fixes=("clip", "gru", "lstm"),
    limits=ExplodingTimeLimits,
    applies_when=RECURRENT,
)
def exploding_through_time(probe: ProbeResult, limits: ExplodingTimeLimits) -> Iterator[Finding]:
    """In a recurrent model, the gradient grows by orders of magnitude going back in time.

    ## What it detects
    The same measurement as `vanishing-through-time` (a backward pass from the last step
    only), when the gradient reaching the earliest steps is far above the last step's.

    ## Why it matters
    A recurrence whose Jacobian has a spectral radius above 1 multiplies the gradient at
    every step: over long sequences it overflows and training diverges.

    ## Evidence
    `module`, `steps`, `first_step` (gradient at step 0 relative to the last), `orders`,
    `per_step_factor`, `threshold`, `curve`.

    ## Thresholds
    `orders` = 3.0: 1000x growth from the last step back to the first. `min_steps` = 8.

    ## Fixes
    clip: clip the gradient norm (clip_grad_norm_), the standard cure for RNNs.
    gru / lstm: gated cells bound the per-step factor.

    ## Example
    An `nn.RNN` with `nonlinearity="relu"` and recurrent weights 1.5 x identity fires
    (`tests/fixtures/faults/exploding_rnn.py`: x1.50 per step, 7e6 over 40 steps);
    `builtin:lstm` is healthy.
    """
    for tt in probe.through_time:
        if tt.steps < limits.min_steps or not tt.curve:
            continue
        grown = orders(tt.curve[0])
        if grown < limits.orders:
            continue
        yield Finding(
            id="exploding-through-time",
            severity=Severity.ERROR,
            layers=(tt.module,),
            status=LayerStatus.EXPLODING,
            message=(
                f"{tt.module} ({tt.type}): the gradient grows x{tt.per_step_factor:.2f} per step going back, "
                f"{tt.curve[0]:.1e}x at the first of {tt.steps} steps."
            ),
            evidence={
                "module": tt.module,
                "steps": tt.steps,
                "first_step": sig(tt.curve[0]),
                "orders": sig(grown),
                "per_step_factor": sig(tt.per_step_factor),
                "threshold": limits.orders,
                "curve": [sig(v) for v in tt.curve],
            },
            suggestions=(
                Suggestion(
                    fix="clip",
                    text="clip_grad_norm_(model.parameters(), max_norm=1.0) in the training step",
                    where=None,
                ),
                Suggestion(
                    fix="gru",
                    text=f"replace {tt.module} ({tt.type}) with nn.GRU({signature(tt)}): gates bound the per-step factor",
                    where=where_of(tt.source, probe),
                ),
            ),
        )
