"""nonfinite-gradients: NaN or infinity in a gradient."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.findings import Finding, LayerStatus, Severity, Suggestion
from gradcheck_cli.rules.base import rule
from gradcheck_cli.stats import ProbeResult


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
    non-finite.

    ## Why it matters
    One NaN poisons every weight it reaches in the next optimizer step; the run is lost.

    ## Evidence
    `first_in_backward` (module), `count` (non-finite elements over all batches),
    `layers_affected`, `loss` (the loss value: NaN there means the forward pass failed
    first), `threshold`.

    ## Thresholds
    `max_count` = 0: any non-finite gradient is an error.

    ## Fixes
    grad-scaler: under float16, use torch.amp.GradScaler (it skips steps with inf/NaN).
    clip: clip the gradient norm so one bad batch cannot blow up the weights.
    eps: add an epsilon inside log, sqrt and divisions (log(x + 1e-8)).

    ## Example
    A model whose forward computes `torch.log(relu(x))` fires (log of zero).
    """
    bad = [layer for layer in probe.layers if layer.nonfinite > limits.max_count]
    if not bad:
        return
    first = max(bad, key=lambda layer: layer.index)
    where = str(first.source) if first.source else None
    yield Finding(
        id="nonfinite-gradients",
        severity=Severity.ERROR,
        layers=tuple(layer.name for layer in bad),
        status=LayerStatus.NONFINITE,
        message=f"Gradients turn NaN/inf at {first.name} ({first.type}) and reach {len(bad)} layers.",
        evidence={
            "first_in_backward": first.name,
            "count": sum(layer.nonfinite for layer in bad),
            "layers_affected": [layer.name for layer in bad],
            "loss": probe.loss_value,
            "threshold": limits.max_count,
        },
        suggestions=(
            Suggestion(
                fix="eps", text=f"guard log/sqrt/division near {first.name} with an epsilon", where=where
            ),
            Suggestion(fix="clip", text="clip the gradient norm (clip_grad_norm_)", where=None),
            Suggestion(
                fix="grad-scaler", text="under float16, scale the loss with torch.amp.GradScaler", where=None
            ),
        ),
    )
