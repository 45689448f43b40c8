"""--precision, the judgement (torch-free): the loss-scale range of a format and each layer's
verdict, from the counts and errors measure/formats.py measured.

A verdict stands on measured errors: `keep-higher-precision` only where running the layer in the
format (its output) or rounding its gradients through the format at the suggested loss scale lost
more than the format's tolerance (records/precision.py: 8 unit roundoffs, at most 0.25);
`needs-scaling` where the unscaled gradients lose more than that, or more than GRAD_FRACTION of
their elements round to zero or overflow, and the scaled ones do not. The shares of elements out
of range are the evidence shown beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gradcheck_cli.records.precision import (
    FINE,
    GRAD_FRACTION,
    KEEP_HIGHER,
    NEEDS_SCALING,
    SMALL_QUANTILE,
    LossScale,
    NumberFormat,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class GradientRange:
    """All measured gradients (at layer outputs and of parameters) against one format."""

    nonzero: int
    peak: float
    small_power: int
    """frexp exponent of the SMALL_QUANTILE of nonzero magnitudes: it lies in [2^(e-1), 2^e)."""
    underflow: int
    """Nonzero elements below the format's smallest normal, unscaled."""
    overflow: int


def power_of(value: float) -> int:
    """log2 of a power of two (the formats' smallest normals and subnormals)."""
    return round(math.log2(value))


def loss_scale(grads: GradientRange, fmt: NumberFormat) -> LossScale:
    """The scales S with max|g| * S <= max and the small quantile * S >= the smallest subnormal.

    Suggested: 1 when the unscaled gradients already fit (at most GRAD_FRACTION below the smallest
    normal, none above the largest value); otherwise the largest power of two that does not
    overflow, the scale torch.amp.GradScaler settles at (it grows until the gradients overflow)."""
    if grads.nonzero == 0 or grads.peak <= 0:
        return LossScale(min=0.0, max=math.inf, suggested=1.0, fits=True, max_grad=0.0, small_grad=0.0)
    small = 2.0 ** (grads.small_power - 1)
    low, high = fmt.min_subnormal / small, fmt.max / grads.peak
    fine = grads.overflow == 0 and grads.underflow <= GRAD_FRACTION * grads.nonzero
    suggested = 1.0 if fine else 2.0 ** math.floor(math.log2(high))
    return LossScale(
        min=low, max=high, suggested=suggested, fits=low <= high, max_grad=grads.peak, small_grad=small
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerErrors:
    """What one layer measured in one format (shares of elements and relative errors)."""

    activation_overflow: float
    activation_underflow: float
    confirmed_error: float
    confirmed_nonfinite: float
    grad_overflow: float
    grad_error: float
    grad_error_scaled: float
    grad_to_zero: float
    grad_to_zero_scaled: float


def verdict(layer: LayerErrors, fmt: NumberFormat, scale: float) -> tuple[str, str]:
    """(verdict, reason) for one layer in one format."""
    tol = fmt.tolerance
    if layer.confirmed_error > tol or math.isinf(layer.confirmed_error):
        return KEEP_HIGHER, _forward_reason(layer, fmt)
    grads_lose = layer.grad_error > tol or layer.grad_to_zero > GRAD_FRACTION or layer.grad_overflow > 0
    if not grads_lose:
        return (
            FINE,
            f"output error {_pct(layer.confirmed_error)} and gradient error {_pct(layer.grad_error)} within {_pct(tol)}",
        )
    scaled_lose = layer.grad_error_scaled > tol or layer.grad_to_zero_scaled > GRAD_FRACTION
    what = (
        f"its gradients lose {_pct(layer.grad_error)} unscaled ({_pct(layer.grad_to_zero)} of elements to 0)"
    )
    at = f"{_pct(layer.grad_error_scaled)} " + (
        "with per-tensor scaling" if fmt.tensor_scaled else f"at loss scale {scale:g}"
    )
    if scaled_lose:
        return KEEP_HIGHER, f"{what}, still {at} (tolerance {_pct(tol)})"
    return NEEDS_SCALING, f"{what}, {at}"


def cause(layer: LayerErrors, fmt: NumberFormat) -> str:
    """Why a layer must stay in higher precision: overflow, underflow or rounding."""
    if layer.confirmed_error > fmt.tolerance or math.isinf(layer.confirmed_error):
        if layer.activation_overflow > 0 or layer.confirmed_nonfinite > 0:
            return "overflow"
        return "underflow" if layer.activation_underflow > GRAD_FRACTION else "rounding"
    return "overflow" if layer.grad_overflow > 0 else "underflow"


def _forward_reason(layer: LayerErrors, fmt: NumberFormat) -> str:
    parts = [
        f"run in {fmt.name} its output is off by {_pct(layer.confirmed_error)} (tolerance {_pct(fmt.tolerance)})"
    ]
    if layer.activation_overflow > 0:
        parts.append(f"{_pct(layer.activation_overflow)} of its outputs exceed {fmt.max:g}")
    if layer.activation_underflow > 0:
        scaled = " at its per-tensor scale" if fmt.tensor_scaled else ""
        parts.append(
            f"{_pct(layer.activation_underflow)} are below {fmt.min_normal:.3g}{scaled} (subnormal or 0)"
        )
    return "; ".join(parts)


def _pct(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf"
    return f"{value:.2%}" if value < 0.1 else f"{value:.0%}"


__all__ = ["SMALL_QUANTILE", "GradientRange", "LayerErrors", "cause", "loss_scale", "power_of", "verdict"]
