"""The extension point for per-layer measurements: a rule that needs a number the probe does not
take yet registers a `Measurement` here, and reads it as `layer.measures["<name>"]`.

    @measurement("grad_peak_ratio", combine=max)
    def grad_peak_ratio(module: nn.Module, grads: Sequence[torch.Tensor]) -> torch.Tensor | None:
        ...  # one scalar tensor on the device, from this batch's gradients of the layer's own parameters

After each backward the probe calls every registered measurement once per parameter-owning layer
that got a gradient, stacks the scalars with its own and brings them to the host in the same
single transfer; `combine` turns one value per batch into the layer's value (median by default),
which lands in `LayerStats.measures` (records/stats.py) for the rules. Nothing else changes: a
measurement is not in the JSON layer rows (a finding carries the values it used as evidence).
Values are taken from the gradients as they are (under a GradScaler, scaled: prefer ratios), and
with `--split-across-ranks` each process combines its own batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from gradcheck_cli.measure.aggregate import median

PerBatch = Callable[[nn.Module, Sequence[torch.Tensor]], "torch.Tensor | None"]


@dataclass(frozen=True, slots=True)
class Measurement:
    name: str
    """The key in LayerStats.measures."""
    per_batch: PerBatch
    """(the layer's module, its own parameters' gradients) -> a scalar tensor, or None (no value)."""
    combine: Callable[[list[float]], float] = median
    """The layer's value from one value per batch (NaN-free list; NaN when empty)."""


_MEASUREMENTS: dict[str, Measurement] = {}


def measurement(
    name: str, combine: Callable[[list[float]], float] = median
) -> Callable[[PerBatch], PerBatch]:
    """Register `per_batch` as the measurement `name` (one name, one measurement)."""

    def register(per_batch: PerBatch) -> PerBatch:
        if name in _MEASUREMENTS:
            raise RuntimeError(f"duplicate registrations for measurement {name!r}")
        _MEASUREMENTS[name] = Measurement(name=name, per_batch=per_batch, combine=combine)
        return per_batch

    return register


def registered() -> tuple[Measurement, ...]:
    return tuple(_MEASUREMENTS.values())


def unregister(name: str) -> None:
    """Remove a measurement (tests that register their own)."""
    _MEASUREMENTS.pop(name, None)


def device_values(
    layers: Sequence[tuple[nn.Module, Sequence[nn.Parameter]]],
) -> tuple[list[torch.Tensor], list[tuple[int, str]]]:
    """This batch's values of every measurement for every layer with a gradient, as device scalars
    (float64, float32 on MPS: the probe's one host transfer takes one dtype per list) and, per scalar, (layer index, measurement name)."""
    values: list[torch.Tensor] = []
    owners: list[tuple[int, str]] = []
    if not _MEASUREMENTS:
        return values, owners
    for index, (module, params) in enumerate(layers):
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            continue
        for spec in _MEASUREMENTS.values():
            value = spec.per_batch(module, grads)
            if value is not None:
                wide = torch.float32 if value.device.type == "mps" else torch.float64  # MPS has no float64
                values.append(value.detach().reshape(()).to(wide))
                owners.append((index, spec.name))
    return values, owners


class _Measured(Protocol):
    measured: list[dict[str, float]]


def land(owners: Sequence[tuple[int, str]], host: list[float], layers: Sequence[_Measured]) -> list[float]:
    """Give each layer this batch's values (the last `len(owners)` of the probe's host transfer,
    in device_values' order); the rest of `host` comes back for the probe's own statistics."""
    cut = len(host) - len(owners)
    for layer in layers:
        layer.measured.append({})
    for (owner, name), value in zip(owners, host[cut:], strict=True):
        layers[owner].measured[-1][name] = value
    return host[:cut]


def combined(per_batch: Sequence[dict[str, float]]) -> tuple[tuple[str, float], ...]:
    """The layer's value of each measurement from its per-batch values (in registration order)."""
    out = []
    for spec in _MEASUREMENTS.values():
        seen = [row[spec.name] for row in per_batch if not math.isnan(row.get(spec.name, math.nan))]
        out.append((spec.name, spec.combine(seen) if seen else math.nan))
    return tuple(out)
