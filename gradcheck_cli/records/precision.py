"""What --dtype float16 measured: gradient elements that flush to zero, with and without loss
scaling (measure/underflow.py). Re-exported by records/stats.py, which holds it in ProbeResult."""

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
