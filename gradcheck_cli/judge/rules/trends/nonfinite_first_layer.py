"""nonfinite-first-layer: over a run, the first step and layer whose gradient went NaN/inf."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import rule
from gradcheck_cli.records.findings import Finding, Severity, Suggestion
from gradcheck_cli.records.history import History, StepStats
from gradcheck_cli.records.stats import ProbeResult


@dataclass(frozen=True, slots=True)
class NonfiniteFirstLimits:
    max_count: float = 0
    """A layer counts as non-finite at a step when more gradient elements than this are NaN/inf."""


@rule(
    id="nonfinite-first-layer",
    severity=Severity.ERROR,
    fixes=("eps", "clip", "lr", "grad-scaler"),
    limits=NonfiniteFirstLimits,
    needs_history=True,
)
def nonfinite_first_layer(probe: ProbeResult, limits: NonfiniteFirstLimits) -> Iterator[Finding]:
    """The first measured step at which a gradient went NaN/inf, its first layer, and the loss's lag.

    ## What it detects
    Over a training run's measured steps, the earliest step at which any layer's gradient held
    NaN or infinity, and at that step the layer first in backward order (the highest forward
    index among those affected: backward reaches it first). It then finds the first measured
    step at which the loss itself was NaN/inf, and counts the steps in between. A single
    analysis has no history; `nonfinite-gradients` covers it. A step a GradScaler skipped
    (non-finite scaled gradients, finite loss: its normal overflow check) is not counted;
    `grad-scaler-skips` reports skips that persist.

    ## Why it matters
    A loss curve shows a NaN only once the weights are already poisoned; the layer that went
    first, and how many steps earlier, points at the operation to guard (a sqrt or log at
    zero, a division, an overflow under float16) rather than at the layers it later spread to.

    ## Evidence
    `first_step`, `first_layer`, `layers_at_first_step`, `loss_at_first_step` (null when no loss
    was passed), `loss_nonfinite_step` (null while the loss is still finite), `steps_before_loss`,
    `last_step` (the latest measured step), `threshold`.

    ## Thresholds
    `max_count` = 0: any non-finite gradient element counts.

    ## Fixes
    eps: add an epsilon inside log, sqrt and divisions near the first layer.
    clip: clip the gradient norm so one bad step cannot poison the weights.
    lr: lower the learning rate if the weights grew until they overflowed.
    grad-scaler: under float16, scale the loss with torch.amp.GradScaler, which skips inf steps.

    ## Example
    `tests/test_integrations_lightning.py` trains a model whose forward takes
    `sqrt(h - h.min())` from step 12: reported at step 12, first layer `enc`, one step before
    the loss turns NaN.
    """
    if probe.history is None:
        return
    steps = probe.history.steps
    worst = probe.history.worst_nonfinite()  # a monitor's book: look only at steps that can be bad
    if worst is not None:
        steps = tuple(s for s, w in zip(steps, worst, strict=True) if w > limits.max_count)
    first = next((s for s in steps if _bad_layers(s, limits) and not _scaler_skip(s)), None)
    if first is None:
        return
    yield _finding(probe.history, first, limits)


def _scaler_skip(stats: StepStats) -> bool:
    """A GradScaler's skipped step with a finite loss: its normal overflow check, not an event
    (grad-scaler-skips judges skips that persist)."""
    loss_ok = stats.loss is None or math.isfinite(stats.loss)
    return stats.loop is not None and stats.loop.scaler_skipped and loss_ok


def _bad_layers(stats: StepStats, limits: NonfiniteFirstLimits) -> list[str]:
    bad = sorted((p for p in stats.layers if p.nonfinite > limits.max_count), key=lambda p: -p.index)
    return [p.name for p in bad]


def _finding(history: History, first: StepStats, limits: NonfiniteFirstLimits) -> Finding:
    layers = _bad_layers(first, limits)
    loss_bad = next(
        (
            s
            for s in history.steps
            if s.loss is not None and not math.isfinite(s.loss) and s.step >= first.step
        ),
        None,
    )
    last = history.steps[-1].step
    if loss_bad is None:
        lag = f"the loss is still finite at step {last}"
    elif loss_bad.step == first.step:
        lag = "the loss was already NaN/inf at that step (the forward pass failed)"
    else:
        lag = f"{loss_bad.step - first.step} steps before the loss did (step {loss_bad.step})"
    return Finding(
        id="nonfinite-first-layer",
        severity=Severity.ERROR,
        layers=(layers[0],),
        message=f"Gradients first went NaN/inf at step {first.step}, at {layers[0]}; {lag}.",
        evidence={
            "first_step": first.step,
            "first_layer": layers[0],
            "layers_at_first_step": layers,
            "loss_at_first_step": first.loss,
            "loss_nonfinite_step": loss_bad.step if loss_bad else None,
            "steps_before_loss": loss_bad.step - first.step if loss_bad else None,
            "last_step": last,
            "threshold": limits.max_count,
        },
        suggestions=(
            Suggestion(fix="eps", text=f"guard log/sqrt/division in or near {layers[0]} with an epsilon"),
            Suggestion(fix="clip", text="clip the gradient norm (torch.nn.utils.clip_grad_norm_)"),
        ),
    )
