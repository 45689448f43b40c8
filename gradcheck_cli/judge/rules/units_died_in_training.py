"""units-died-in-training: ReLU units that were alive in the reference state (init) and are dead now."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import REFERENCE_STATE, rule
from gradcheck_cli.judge.rules.profile import sig
from gradcheck_cli.judge.rules.training import RETRAIN
from gradcheck_cli.records.findings import Finding, LayerStatus, Severity, Suggestion
from gradcheck_cli.records.stats import ProbeResult
from gradcheck_cli.records.text import count


@dataclass(frozen=True, slots=True)
class DiedLimits:
    died_fraction: float = 0.25
    """Warn when the dead fraction grew by more than this since the reference state."""
    error_fraction: float = 0.9
    """An error when, in addition, more than this fraction is dead now."""


@rule(
    id="units-died-in-training",
    severity=Severity.ERROR,
    fixes=("lr", "warmup", "leaky-relu"),
    limits=DiedLimits,
    applies_when=REFERENCE_STATE,
)
def units_died_in_training(probe: ProbeResult, limits: DiedLimits) -> Iterator[Finding]:
    """ReLU units that were alive in the reference state died during training.

    ## What it detects
    Under `--versus init` (or `--versus other.pt`), for every ReLU-family activation, the
    fraction of units never positive on any sample of the same batches, in this state and in
    the reference state. It fires where that fraction grew by more than `died_fraction`:
    units the architecture had alive that training killed.

    ## Why it matters
    `dead-units` says units are dead; this says training killed them, which points at the
    step size (a large update pushes a unit's bias and weights to where no input turns it
    on, and it never gets a gradient again), not at the initialisation.

    ## Evidence
    `activations` (largest growth first: a layer going 2% -> 79% outranks one at 44% that was
    already 40%), `dead_now`, `dead_at_reference`, `died` (the growth) per activation,
    `reference`, `threshold`, `error_threshold`.

    ## Thresholds
    `died_fraction` = 0.25 (a quarter of the units died since the reference; a warning),
    `error_fraction` = 0.9 (an error when, besides, more than 90% are dead now). On the
    models trained here (`benchmarks/trained_states.py`, 300 steps) healthy runs kill at most
    2% of a layer's units; too-high learning rates kill 53% (CNN) and 98% (MLP).

    ## Fixes
    lr: lower the learning rate (the updates that killed the units were too large).
    warmup: warm the learning rate up so the first large gradients take small steps.
    leaky-relu: LeakyReLU or GELU keep a gradient for negative inputs, so units can recover.

    ## Example
    The ReLU MLP of `tests/fixtures/trained/relu_mlp.py` trained 40 SGD steps at lr 3
    (`tests/test_versus.py`) fires under `--weights ... --versus init`; trained at lr 0.05 it
    does not.
    """
    if probe.versus is None:
        return
    died = [
        a
        for a in probe.versus.activations
        if math.isfinite(a.dead_fraction[0])
        and a.dead_fraction[0] - a.dead_fraction[1] > limits.died_fraction
    ]
    if not died:
        return
    died.sort(key=lambda a: -(a.dead_fraction[0] - a.dead_fraction[1]))  # the largest change leads
    worst = max(a.dead_fraction[0] for a in died)
    first = died[0]
    after = {a.name: a.after for a in probe.activations}
    reference = probe.versus.reference
    yield Finding(
        id="units-died-in-training",
        severity=Severity.ERROR if worst > limits.error_fraction else Severity.WARNING,
        layers=tuple(after.get(a.name) or a.name for a in died),
        status=LayerStatus.DEAD,
        message=(
            f"{count(len(died), 'ReLU activation')} lost units to training: at {first.name} "
            f"{first.dead_fraction[0]:.0%} of the units are dead, {first.dead_fraction[1]:.0%} at {reference}."
        ),
        evidence={
            "activations": [a.name for a in died],
            "dead_now": [sig(a.dead_fraction[0]) for a in died],
            "dead_at_reference": [sig(a.dead_fraction[1]) for a in died],
            "died": [sig(a.dead_fraction[0] - a.dead_fraction[1]) for a in died],
            "reference": reference,
            "threshold": limits.died_fraction,
            "error_threshold": limits.error_fraction,
        },
        suggestions=(
            Suggestion(
                fix="lr", text="lower the learning rate: the updates that killed these units were too large"
            ),
            Suggestion(fix="warmup", text="warm the learning rate up over the first steps (LinearLR)"),
            Suggestion(
                fix="leaky-relu",
                text=f"use LeakyReLU(0.01) or GELU at {first.name} so units can recover: {RETRAIN}",
            ),
        ),
    )
