"""fp16-underflow: under --dtype float16, gradients that flush to zero without loss scaling."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import AppliesWhen, rule
from gradcheck_cli.records.findings import Finding, Severity, Suggestion
from gradcheck_cli.records.stats import ProbeResult


@dataclass(frozen=True, slots=True)
class Fp16UnderflowLimits:
    min_fraction: float = 0.05
    """Fire when at least this fraction of gradient elements (nonzero in float32) flush to zero."""
    error_fraction: float = 0.5
    """At or above this fraction the finding is an error, below it a warning."""


@rule(
    id="fp16-underflow",
    severity=Severity.ERROR,
    fixes=("grad-scaler",),
    limits=Fp16UnderflowLimits,
    applies_when=AppliesWhen(
        lambda r: r.model.dtype == "float16", lambda r: f"a {r.model.dtype} run, not float16"
    ),
)
def fp16_underflow(probe: ProbeResult, limits: Fp16UnderflowLimits) -> Iterator[Finding]:
    """Gradients that flush to zero in float16 when the loss is not scaled.

    ## What it detects
    Under `--dtype float16` the tool runs the first batch three times with the same seed:
    in float32, under float16 autocast without loss scaling, and under float16 autocast
    with the loss scaled as `torch.amp.GradScaler` scales it (2**16, halved while the
    scaled gradients overflow). It counts the parameter-gradient elements that are
    nonzero in float32 but exactly zero in float16. Gradients below float16's smallest
    subnormal (about 6e-8) round to zero on their way back through half-precision ops.

    ## Why it matters
    A zero gradient is no update: the weights it belongs to stop learning, silently, and
    the loss curve looks like a plateau rather than an error.

    ## Evidence
    `fraction_without_scaler`, `fraction_with_scaler` (of the elements nonzero in
    float32), `elements` (how many that is), `loss_scale` (the scale of the scaled run),
    `worst_layer` and `worst_fraction`, `threshold`.

    ## Thresholds
    `min_fraction` = 0.05: fire when 5% or more of the gradient flushes to zero without
    scaling. `error_fraction` = 0.5: from half of the gradient on it is an error.

    ## Fixes
    grad-scaler: scale the loss with torch.amp.GradScaler (scaler.scale(loss).backward(),
    scaler.step(optimizer), scaler.update()), or train in bfloat16, which has float32's range.

    ## Example
    A model file whose `loss_fn` returns `F.mse_loss(output, target) * 1e-6` fires under
    `--dtype float16` (its gradients are near 1e-9); the same model with the plain loss,
    or any `builtin:` model such as `builtin:residual-mlp`, does not.
    """
    measured = probe.fp16_underflow
    if measured is None or measured.fraction_without_scaler < limits.min_fraction:
        return
    flushed = [layer for layer in measured.layers if layer.fraction_without_scaler >= limits.min_fraction]
    worst = max(measured.layers, key=lambda layer: layer.fraction_without_scaler)
    severity = (
        Severity.ERROR if measured.fraction_without_scaler >= limits.error_fraction else Severity.WARNING
    )
    yield Finding(
        id="fp16-underflow",
        severity=severity,
        layers=tuple(layer.name for layer in flushed),
        message=(
            f"In float16 without loss scaling, {measured.fraction_without_scaler:.0%} of gradient elements "
            f"flush to zero (worst: {worst.name}, {worst.fraction_without_scaler:.0%}); "
            f"scaled by {measured.loss_scale:g}, {measured.fraction_with_scaler:.0%} do."
        ),
        evidence={
            "fraction_without_scaler": measured.fraction_without_scaler,
            "fraction_with_scaler": measured.fraction_with_scaler,
            "elements": measured.elements,
            "loss_scale": measured.loss_scale,
            "worst_layer": worst.name,
            "worst_fraction": worst.fraction_without_scaler,
            "threshold": limits.min_fraction,
        },
        suggestions=(_suggestion(measured.fraction_with_scaler, limits.min_fraction),),
    )


def _suggestion(with_scaler: float, min_fraction: float) -> Suggestion:
    if with_scaler < min_fraction:
        text = (
            "train with torch.amp.GradScaler: scaler.scale(loss).backward(); "
            "scaler.step(optimizer); scaler.update()"
        )
    else:
        text = (
            "even a GradScaler leaves the gradients flushed: raise its init_scale, "
            "scale the loss up, or train in bfloat16"
        )
    return Suggestion(fix="grad-scaler", text=text, where=None)
