"""What the three --precision rules share (precision-overflow, precision-underflow,
precision-rounding): one finding per number format for the layers whose cause is theirs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gradcheck_cli.records.findings import Finding, Severity, Suggestion
from gradcheck_cli.records.precision import (
    KEEP_HIGHER,
    NEEDS_SCALING,
    FormatHeadroom,
    FormatLayer,
    number_format,
)
from gradcheck_cli.records.report import Report
from gradcheck_cli.records.stats import ProbeResult


@dataclass(frozen=True, slots=True)
class PrecisionLimits:
    tolerance_factor: float = 1.0
    """Report a layer only when its measured error is above the format's tolerance times this
    (1: the verdict's own tolerance; the JSON verdicts keep the default)."""


def asked_for_precision(report: Report) -> bool:
    return report.precision is not None


def precision_findings(
    probe: ProbeResult, limits: PrecisionLimits, finding_id: str, cause: str
) -> Iterator[Finding]:
    if probe.precision is None:
        return
    for headroom in probe.precision.formats:
        # fp8 recipes scale every tensor anyway: a layer that only needs that is no finding
        scaled = number_format(headroom.format).tensor_scaled
        layers = [
            layer
            for layer in headroom.layers
            if layer.cause == cause
            and (layer.verdict == KEEP_HIGHER or (layer.verdict == NEEDS_SCALING and not scaled))
            and _above(layer, headroom, limits)
        ]
        if layers:
            yield _finding(finding_id, headroom, layers)


def _above(layer: FormatLayer, headroom: FormatHeadroom, limits: PrecisionLimits) -> bool:
    """The layer's deciding error is above the (scaled) tolerance; shares out of range count too."""
    if limits.tolerance_factor == 1.0:
        return True
    limit = headroom.tolerance * limits.tolerance_factor
    errors = [layer.confirmed_error]
    errors.append(layer.grad_error_scaled if layer.verdict == KEEP_HIGHER else layer.grad_error)
    return any(not (e <= limit) for e in errors if e == e)  # NaN: not measured


def _finding(finding_id: str, headroom: FormatHeadroom, layers: list[FormatLayer]) -> Finding:
    keep = [layer for layer in layers if layer.verdict == KEEP_HIGHER]
    scaling = [layer for layer in layers if layer.verdict == NEEDS_SCALING]
    worst = max(layers, key=lambda layer: _deciding(layer))
    fmt, scale = headroom.format, headroom.loss_scale
    parts = []
    if keep:
        parts.append(f"{_names(keep)} must stay in higher precision")
    if scaling:
        how = "per-tensor scaling" if _tensor_scaled(fmt) else f"a loss scale (suggested {scale.suggested:g})"
        parts.append(f"{_names(scaling)} need {how}")
    message = f"In {fmt}, {' and '.join(parts)} ({finding_id.removeprefix('precision-')}); worst: {worst.name}: {worst.reason}."
    suggestions = []
    if keep:
        suggestions.append(Suggestion(fix="precision", text=_keep_text(fmt, keep)))
    if scaling:
        suggestions.append(Suggestion(fix="grad-scaler", text=_scale_text(fmt, scale.suggested)))
    return Finding(
        id=finding_id,
        severity=Severity.ERROR if keep else Severity.WARNING,
        layers=tuple(layer.name for layer in layers),
        message=message,
        evidence={
            "format": fmt,
            "tolerance": headroom.tolerance,
            "method": headroom.method,
            "loss_scale": scale.suggested,
            "loss_scale_min": scale.min,
            "loss_scale_max": scale.max,
            "loss_scale_fits": scale.fits,
            "worst_layer": worst.name,
            **_evidence(layers),
        },
        suggestions=tuple(suggestions),
    )


def _deciding(layer: FormatLayer) -> float:
    values = [v for v in (layer.confirmed_error, layer.grad_error_scaled, layer.grad_error) if v == v]
    return max(values, default=0.0)


def _names(layers: list[FormatLayer]) -> str:
    shown = ", ".join(layer.name for layer in layers[:3])
    return shown + (f" (+{len(layers) - 3})" if len(layers) > 3 else "")


def _evidence(layers: list[FormatLayer]) -> dict[str, Any]:
    """Per layer (in the order of `layers`): its verdict, measured errors and shares out of range."""
    fields = (
        "verdict",
        "confirmed_error",
        "confirmed_nonfinite",
        "grad_error",
        "grad_error_scaled",
        "activation_underflow",
        "activation_overflow",
        "grad_underflow",
        "grad_overflow",
    )
    return {f"{name}s": [getattr(layer, name) for layer in layers] for name in fields}


def _keep_text(fmt: str, layers: list[FormatLayer]) -> str:
    names = _names(layers)
    if fmt.startswith("fp8"):
        return f"leave {names} out of the fp8 recipe (keep them in bf16 or float32)"
    return (
        f"run {names} in float32: wrap them in torch.autocast(device_type, enabled=False) and cast "
        f"their input with .float(), or rescale what they compute so it fits {fmt}"
    )


def _tensor_scaled(fmt: str) -> bool:
    return number_format(fmt).tensor_scaled


def _scale_text(fmt: str, scale: float) -> str:
    if _tensor_scaled(fmt):
        return (
            f"scale every {fmt} tensor by its own factor (an fp8 recipe's per-tensor amax scaling, "
            "e.g. TransformerEngine's DelayedScaling); one loss scale does not fit every layer"
        )
    return (
        f"scale the loss for {fmt}: torch.amp.GradScaler(init_scale={scale:g}) "
        "(scaler.scale(loss).backward(); scaler.step(optimizer); scaler.update())"
    )
