"""Activation statistics: dead ReLU units and saturated sigmoid/tanh outputs.

One definition for both places activations are seen: nn.ReLU/nn.Sigmoid/nn.Tanh modules (the
probe's forward hooks, `ModuleActivation`) and function calls such as F.relu (functional.py).
Everything is reduced on the device; nothing full-size is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gradcheck_cli.stats import ActivationStats, SourceRef

RELU_FAMILY = (nn.ReLU, nn.ReLU6)
SATURATING = {nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.Hardsigmoid: "sigmoid", nn.Hardtanh: "tanh"}
# Saturation: the local derivative is under 5% of its maximum.
SIGMOID_TAIL = 0.0127  # s(1-s) < 0.0125 (5% of 0.25) outside [0.0127, 0.9873]
TANH_TAIL = 0.975  # 1 - y^2 < 0.05 beyond |y| = 0.975


def family_of(module: nn.Module) -> str | None:
    """relu, sigmoid or tanh for an activation module, else None."""
    return "relu" if isinstance(module, RELU_FAMILY) else SATURATING.get(type(module))


def first_tensor_out(output: Any) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


def unit_dim(out: torch.Tensor) -> int:
    """Units: channels of an image-like tensor (N, C, H, W), else the last dimension."""
    return 1 if out.dim() >= 4 else out.dim() - 1


def unit_peaks(out: torch.Tensor) -> torch.Tensor:
    """Per unit (channels of an (N, C, ...) image tensor, else the last dimension), its largest value.

    A ReLU unit is alive when its peak is positive: one amax reduction costs a twentieth of
    `(out > 0).any(dims)` on CPU and allocates nothing full-size.
    """
    ndim = out.dim()
    keep = unit_dim(out)
    reduce = [d for d in range(ndim) if d != keep]
    return out.amax(dim=reduce) if reduce else out


def tail_count(out: torch.Tensor, family: str) -> torch.Tensor:
    """Elements of a sigmoid/tanh output in a flat tail (derivative under 5% of its maximum)."""
    if family == "sigmoid":
        return (out - 0.5).abs_().gt_(0.5 - SIGMOID_TAIL).sum()
    return out.abs().gt_(TANH_TAIL).sum()


def dead_units(peaks: list[torch.Tensor]) -> torch.Tensor:
    """Units that never exceeded 0, on the device (NaN is not <= 0: a NaN unit is not dead)."""
    return torch.stack([(peak <= 0).sum() for peak in peaks]).sum()


def activation_record(
    *, name: str, type: str, family: str, after: str | None, units: int, count: float, total: int,
    source: SourceRef | None,
) -> ActivationStats:  # fmt: skip
    """The statistics of one activation from its counts: `count` dead units (ReLU family,
    over `units`) or elements in a flat tail (saturating family, over `total` elements)."""
    dead = count / units if family == "relu" and units else 0.0
    saturated = count / total if family != "relu" and total else 0.0
    return ActivationStats(
        name=name,
        type=type,
        family=family,
        after=after,
        units=units,
        dead_fraction=dead,
        saturated_fraction=saturated,
        source=source,
    )


@dataclass(slots=True)
class ModuleActivation:
    """One activation module's running statistics (fed by the probe's forward hook)."""

    name: str
    module: nn.Module
    family: str
    after: str | None = None
    peaks: dict[int, torch.Tensor] = field(default_factory=dict)
    """Per call within one forward (one nn.ReLU is often reused on several widths), the largest
    value of each unit so far: a ReLU unit is dead when it never exceeds 0."""
    tails: list[torch.Tensor] = field(default_factory=list)
    """Per call, the count of elements in a flat tail (summed once, at the end)."""
    total: int = 0
    forward_seen: int = -1
    call: int = 0

    def observe(self, out: torch.Tensor, forward: int) -> None:
        """One call's output (detached: the reductions stay off the graph)."""
        if self.forward_seen != forward:
            self.forward_seen, self.call = forward, 0
        self.call += 1
        self.total += out.numel()
        if self.family == "relu":
            peak = unit_peaks(out)
            seen = self.peaks.get(self.call)
            same = seen is not None and seen.shape == peak.shape
            self.peaks[self.call] = torch.maximum(seen, peak) if same else peak  # type: ignore[arg-type]
            return
        self.tails.append(tail_count(out, self.family))

    def reset(self) -> None:
        self.peaks.clear()
        self.tails.clear()
        self.total, self.forward_seen, self.call = 0, -1, 0

    def count(self) -> torch.Tensor:
        """Dead units (ReLU family) or elements in a flat tail (saturating family), on the device."""
        if self.peaks:
            return dead_units(list(self.peaks.values()))
        if self.tails:
            return torch.stack(self.tails).sum()
        return torch.zeros((), dtype=torch.int64)

    def stats(self, count: float, source: SourceRef | None) -> ActivationStats:
        units = sum(peak.numel() for peak in self.peaks.values()) if self.peaks else 0
        return activation_record(
            name=self.name, type=type(self.module).__name__, family=self.family, after=self.after,
            units=units, count=count if (self.peaks or self.tails) else 0.0, total=self.total, source=source,
        )  # fmt: skip
