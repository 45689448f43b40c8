"""nonfinite-gradients: NaN or infinity in a gradient."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import rule
from gradcheck_cli.judge.rules.profile import where as where_of
from gradcheck_cli.judge.rules.training import diverged_in_training
from gradcheck_cli.records.findings import Finding, LayerStatus, Severity, Suggestion
from gradcheck_cli.records.stats import ProbeResult
from gradcheck_cli.records.text import count


@dataclass(frozen=True, slots=True)
class NonfiniteLimits:
    max_count: float = 0
    """Fire when more than this many gradient elements are NaN or infinite."""


@rule(
    id="nonfinite-gradients",
    severity=Severity.ERROR,
    fixes=("grad-scaler", "clip", "eps"),
    limits=NonfiniteLimits,
)
def nonfinite_gradients(probe: ProbeResult, limits: NonfiniteLimits) -> Iterator[Finding]:
    """NaN or infinity in a gradient, naming the first module where it appears.

    ## What it detects
    Non-finite values in parameter gradients or in the gradient with respect to a
    module's output. Backward runs from the last layer to the first, so the module with
    the highest forward index among those affected is where the gradient first turns
    non-finite. When it can, the tool then re-runs one batch to name the operation: first
    the forward op that made NaN/inf out of finite inputs (`log` of zero, `div` by zero),
    else, under anomaly detection, the op whose backward first turned finite gradients
    into NaN/inf (`sqrt` at zero), with the line of the model's code that called it.

    When `--steps` made the model diverge, `training-divergence` reports it instead (the
    cause is the step size, and epsilons would not help).

    ## Why it matters
    One NaN poisons every weight it reaches in the next optimizer step; the run is lost.

    ## Evidence
    `first_in_backward` (module), `count` (non-finite elements over all batches),
    `layers_affected`, `loss` (the loss value: NaN there means the forward pass failed
    first), `forward_op` and `op_where` (from the anomaly re-run, null when not found),
    `threshold`.

    ## Thresholds
    `max_count` = 0: any non-finite gradient is an error.

    ## Fixes
    grad-scaler: under float16, use torch.amp.GradScaler (it skips steps with inf/NaN).
    clip: clip the gradient norm so one bad batch cannot blow up the weights.
    eps: add an epsilon inside log, sqrt and divisions (log(x + 1e-8)).

    ## Example
    A model whose forward computes `torch.sqrt(h - h.min())` fires: sqrt at exactly zero
    has an infinite slope, and the finding names `sqrt` and its line
    (`tests/fixtures/faults/nonfinite_sqrt.py`).
    """
    bad = [layer for layer in probe.layers if layer.nonfinite > limits.max_count]
    if not bad or diverged_in_training(probe.training):  # training-divergence says why
        return
    first = max(bad, key=lambda layer: layer.index)
    op_where = str(probe.nonfinite_source) if probe.nonfinite_source else None
    where = op_where or where_of(first.source, probe)
    forward_failed = not math.isfinite(probe.loss_value)
    if probe.nonfinite_op and forward_failed:
        op = f"; {probe.nonfinite_op}() already made NaN/inf in the forward pass (the loss is {probe.loss_value})"
    else:
        op = f"; the backward of {probe.nonfinite_op}() made them" if probe.nonfinite_op else ""
    op += f" ({op_where})" if op and op_where else ""
    yield Finding(
        id="nonfinite-gradients",
        severity=Severity.ERROR,
        layers=tuple(layer.name for layer in bad),
        status=LayerStatus.NONFINITE,
        message=(
            f"Gradients turn NaN/inf at {first.name} ({first.type}), the first module in backward "
            f"order, and reach {count(len(bad), 'layer')}{op}."
        ),
        evidence={
            "first_in_backward": first.name,
            "count": sum(layer.nonfinite for layer in bad),
            "layers_affected": [layer.name for layer in bad],
            "loss": probe.loss_value,
            "forward_op": probe.nonfinite_op,
            "op_where": op_where,
            "threshold": limits.max_count,
        },
        suggestions=(
            Suggestion(
                fix="eps",
                text=_eps_text(probe.nonfinite_op, first.name),
                where=where,
            ),
            Suggestion(fix="clip", text="clip the gradient norm (clip_grad_norm_)", where=None),
            *_scaler(probe),
        ),
    )


def _scaler(probe: ProbeResult) -> tuple[Suggestion, ...]:
    """GradScaler helps only a float16 run; advising it for float32 would mislead."""
    if probe.model.dtype != "float16":
        return ()
    return (Suggestion(fix="grad-scaler", text="scale the loss with torch.amp.GradScaler", where=None),)


def _eps_text(op: str | None, layer: str) -> str:
    if op in ("sqrt", "rsqrt", "pow"):
        return f"add an epsilon inside {op}: torch.{op}(x + 1e-8)"
    if op in ("log", "log2", "log10"):
        return f"add an epsilon inside {op}: torch.{op}(x + 1e-8), or use log_softmax / clamp(min=1e-8)"
    if op == "div":
        return "add an epsilon to the denominator: x / (y + 1e-8)"
    return f"guard log/sqrt/division near {layer} with an epsilon"
