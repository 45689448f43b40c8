"""What --dtype float16 measured: gradient elements that flush to zero, with and without loss
scaling (measure/underflow.py), re-exported by records/stats.py, which holds it in ProbeResult; and
what --precision measured: per number format, every layer's headroom (measure/formats.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerUnderflow:
    """One module's share of an Fp16Underflow measurement."""

    name: str
    elements: int
    """Parameter-gradient elements of this module that are nonzero in float32."""
    fraction_without_scaler: float
    fraction_with_scaler: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Fp16Underflow:
    """Under --dtype float16: gradient elements that flush to zero, with and without loss scaling.

    Measured on the first batch against the same run in float32; fractions are of the
    parameter-gradient elements that are nonzero in float32.
    """

    loss_scale: float
    """The loss scale of the scaled run (GradScaler's 2**16, halved while it overflowed)."""
    elements: int
    fraction_without_scaler: float
    fraction_with_scaler: float
    layers: tuple[LayerUnderflow, ...] = ()


# --- --precision: number-format headroom (measure/formats.py) -------------------------------------

FINE = "fine"
NEEDS_SCALING = "needs-scaling"
KEEP_HIGHER = "keep-higher-precision"
VERDICTS = (FINE, NEEDS_SCALING, KEEP_HIGHER)

TOLERANCE_ROUNDOFFS = 8
"""A layer's relative error in a format is acceptable up to this many of the format's unit
roundoffs u = 2^-(mantissa bits + 1): rounding the input and the weights costs each product about
2u at worst and ~0.8u in root mean square over a dot product of random terms (docs/precision.md)."""
TOLERANCE_CAP = 0.25
"""...and never more than this (fp8 formats have u = 1/16 and 1/8: 8u would accept a flush to 0)."""
GRAD_FRACTION = 0.01
"""Gradients need a loss scale when more than this share of their nonzero elements is out of range."""
SMALL_QUANTILE = 0.01
"""The loss scale must lift this quantile of the nonzero gradient magnitudes above the format's
smallest subnormal ("most small gradients representable")."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NumberFormat:
    """A number format's limits (IEEE-style: values below `min_normal` are subnormal, with fewer
    significant bits; below half of `min_subnormal` they round to zero; above `max` they overflow)."""

    name: str
    """As --precision spells it."""
    dtype: str
    """The torch dtype's name."""
    max: float
    min_normal: float
    min_subnormal: float
    mantissa_bits: int
    native_on_cpu: bool
    """True: the layer is run in the dtype; False (fp8): operands are rounded through the dtype
    and the arithmetic is float32 (torch has no fp8 matmul on CPU), the output rounded again."""
    tensor_scaled: bool = False
    """fp8 as fp8 recipes run it: every tensor is multiplied by its own power-of-two scale
    2^floor(log2(max / amax)) before it is stored in the format (and divided after), so the
    verdict's run and its scaled gradients use per-tensor scales, not one loss scale."""

    @property
    def roundoff(self) -> float:
        return 2.0 ** -(self.mantissa_bits + 1)

    @property
    def tolerance(self) -> float:
        return min(TOLERANCE_ROUNDOFFS * self.roundoff, TOLERANCE_CAP)


NUMBER_FORMATS: tuple[NumberFormat, ...] = (
    NumberFormat(name="bf16", dtype="bfloat16", max=3.3895313892515355e38, min_normal=2.0**-126,
                 min_subnormal=2.0**-133, mantissa_bits=7, native_on_cpu=True),
    NumberFormat(name="fp16", dtype="float16", max=65504.0, min_normal=2.0**-14,
                 min_subnormal=2.0**-24, mantissa_bits=10, native_on_cpu=True),
    NumberFormat(name="fp8-e4m3", dtype="float8_e4m3fn", max=448.0, min_normal=2.0**-6,
                 min_subnormal=2.0**-9, mantissa_bits=3, native_on_cpu=False, tensor_scaled=True),
    NumberFormat(name="fp8-e5m2", dtype="float8_e5m2", max=57344.0, min_normal=2.0**-14,
                 min_subnormal=2.0**-16, mantissa_bits=2, native_on_cpu=False, tensor_scaled=True),
)  # fmt: skip
FORMAT_NAMES = tuple(f.name for f in NUMBER_FORMATS)


def number_format(name: str) -> NumberFormat:
    return next(f for f in NUMBER_FORMATS if f.name == name)


@dataclass(frozen=True, slots=True, kw_only=True)
class FormatLayer:
    """One layer in one format: shares of its elements out of the format's range, measured on the
    float32 reference pass, and the error of actually running the layer in the format."""

    name: str
    activation_underflow: float
    """Share of the nonzero output elements below the format's smallest normal (subnormal or 0)."""
    activation_overflow: float
    """Share of the finite output elements above the format's largest value."""
    grad_underflow: float
    """The same for the gradient at the layer's output (unscaled)."""
    grad_overflow: float
    weight_grad_underflow: float
    """The same for the gradient of the layer's own parameters (unscaled)."""
    weight_grad_overflow: float
    activation_to_zero: float
    """Share of the nonzero output elements below half the smallest subnormal: they round to 0."""
    grad_to_zero: float
    """The same for the output and parameter gradients together (unscaled)."""
    confirmed_error: float
    """Relative L2 error of the layer's output run in the format against float32."""
    confirmed_nonfinite: float
    """Share of that output that came out inf or NaN (counted into the error as lost)."""
    grad_error: float
    """Relative L2 error of the layer's output and parameter gradients rounded through the format."""
    grad_error_scaled: float
    """The same at the format's suggested loss scale (scaled, rounded, unscaled)."""
    verdict: str
    """fine, needs-scaling or keep-higher-precision (judge/format_verdict.py)."""
    reason: str
    cause: str = ""
    """Not fine: overflow, underflow or rounding (too few mantissa bits)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LossScale:
    """The loss scales S that keep gradients representable: max|g| * S <= max and the
    SMALL_QUANTILE of nonzero |g|, times S, at or above the smallest subnormal."""

    min: float
    max: float
    suggested: float
    """1 when no scaling is needed, else a power of two in [min, max] (the largest below max when
    the range is empty: overflow is worse than underflow)."""
    fits: bool
    max_grad: float
    small_grad: float
    """The SMALL_QUANTILE of the nonzero gradient magnitudes (the lower edge of its power of two)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FormatHeadroom:
    format: str
    method: str
    """How the layers were run: "ran in float16" or "rounded through float8_e4m3fn, computed in float32"."""
    tolerance: float
    layers: tuple[FormatLayer, ...]
    loss_scale: LossScale


@dataclass(frozen=True, slots=True, kw_only=True)
class PrecisionHeadroom:
    """--precision: per format, every layer's headroom (first batch, float32 reference pass)."""

    formats: tuple[FormatHeadroom, ...]
    elements: int = 0
    """Output, output-gradient and parameter-gradient elements measured (over all layers)."""
