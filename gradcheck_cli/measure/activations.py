"""Activation statistics: dead ReLU units and saturated sigmoid/tanh outputs.

One definition for both places activations are seen: nn.ReLU/nn.Sigmoid/nn.Tanh modules (the
probe's forward hooks, `ModuleActivation`) and function calls such as F.relu (functional.py).
Everything is reduced on the device; nothing full-size is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from gradcheck_cli.records.stats import ActivationStats, SourceRef

RELU_FAMILY = (nn.ReLU, nn.ReLU6)
SATURATING = {nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.Hardsigmoid: "sigmoid", nn.Hardtanh: "tanh"}
# Saturation: the local derivative is under 5% of its maximum.
SIGMOID_TAIL = 0.0127  # s(1-s) < 0.0125 (5% of 0.25) outside [0.0127, 0.9873]
TANH_TAIL = 0.975  # 1 - y^2 < 0.05 beyond |y| = 0.975


def is_hard(module: nn.Module) -> bool:
    """Hardsigmoid/Hardtanh: derivative 1 inside the clamp, 0 at it (ReLU6 is a Hardtanh too)."""
    return isinstance(module, (nn.Hardsigmoid, nn.Hardtanh)) and not isinstance(module, RELU_FAMILY)


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


def unit_lows(value: torch.Tensor) -> torch.Tensor:
    """Per unit, its smallest value (with unit_peaks: a unit whose input never varies)."""
    keep = unit_dim(value)
    reduce = [d for d in range(value.dim()) if d != keep]
    return value.amin(dim=reduce) if reduce else value


CENTRED_SCALE = {"sigmoid": 4.0, "tanh": 1.0}
"""c in: relative derivative = 1 - c * centred^2 (sigmoid: 4s(1-s) = 1 - 4(s-0.5)^2; tanh: 1 - y^2)."""


def tail_and_norm(out: torch.Tensor, family: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Elements in a flat tail, and the L2 norm of the output centred on the derivative's peak
    (s - 0.5 for sigmoid, y for tanh): the summed relative derivative is numel - c * norm^2,
    the share of the gradient the activation passes, from one extra reduction."""
    centred = out - 0.5 if family == "sigmoid" else out
    # vector_norm refuses to narrow float64 to float32: keep float64 there
    wide = centred.dtype == torch.float64
    norm = (
        torch.linalg.vector_norm(centred) if wide else torch.linalg.vector_norm(centred, dtype=torch.float32)
    )
    if family == "sigmoid":
        return centred.abs_().gt_(0.5 - SIGMOID_TAIL).sum(), norm
    return centred.abs().gt_(TANH_TAIL).sum(), norm


def mean_gain(family: str, hard: bool, total: int, tails: float, centred_sq: float) -> float:
    """Mean local derivative relative to its maximum, from tail_and_norm's sums."""
    if not total:
        return float("nan")
    lost = tails if hard else CENTRED_SCALE[family] * centred_sq
    return max(0.0, total - lost) / total


def dead_units(peaks: list[torch.Tensor], lows: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Units that never exceeded 0 although their input varied, on the device (NaN is not <= 0:
    a NaN unit is not dead). A unit fed a constant (0 behind a closed gate) is not observed."""
    if lows is None:
        return torch.stack([(peak <= 0).sum() for peak in peaks]).sum()
    return torch.stack(
        [((peak <= 0) & (peak > low)).sum() for peak, low in zip(peaks, lows, strict=True)]
    ).sum()


def unobserved_units(peaks: list[torch.Tensor], lows: list[torch.Tensor]) -> torch.Tensor:
    """Units never positive whose input never varied (e.g. ReLU(0) behind a closed gate)."""
    return torch.stack(
        [((peak <= 0) & (peak <= low)).sum() for peak, low in zip(peaks, lows, strict=True)]
    ).sum()


def activation_record(
    *, name: str, type: str, family: str, after: str | None, units: int, count: float, total: int,
    source: SourceRef | None, observations: int = 0, unobserved: float = 0.0, gain: float = float("nan"),
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
        observations=observations,
        unobserved_fraction=unobserved / units if family == "relu" and units else 0.0,
        mean_gain=gain,
        source=source,
    )


@dataclass(slots=True)
class ModuleActivation:
    """One activation module's running statistics (fed by the probe's hooks: a ReLU's input from a
    pre-hook, since a unit is positive exactly when its input is; a sigmoid/tanh's output)."""

    name: str
    module: nn.Module
    family: str
    after: str | None = None
    hard: bool = False
    peaks: dict[int, torch.Tensor] = field(default_factory=dict)
    """Per call within one forward (one nn.ReLU is often reused on several widths), the largest
    value of each unit so far: a ReLU unit is dead when it never exceeds 0."""
    lows: dict[int, torch.Tensor] = field(default_factory=dict)
    """Per call, the smallest input of each unit: a unit whose input never varies (exactly 0
    behind a closed zero-initialised gate) is not observed, so it is not called dead."""
    observations: dict[int, int] = field(default_factory=dict)
    """Per call, the values each unit was seen on (samples x positions, over batches)."""
    tails: list[torch.Tensor] = field(default_factory=list)
    """Per call, the count of elements in a flat tail (summed once, at the end)."""
    norms: list[torch.Tensor] = field(default_factory=list)
    """Per call, tail_and_norm's centred norm (for the mean derivative)."""
    total: int = 0
    forward_seen: int = -1
    call: int = 0

    def observe(self, value: torch.Tensor, forward: int) -> None:
        """One call's ReLU input or sigmoid/tanh output (detached: reductions stay off the graph)."""
        if self.forward_seen != forward:
            self.forward_seen, self.call = forward, 0
        self.call += 1
        self.total += value.numel()
        if self.family == "relu":
            peak, low = unit_peaks(value), unit_lows(value)
            seen = self.peaks.get(self.call)
            same = seen is not None and seen.shape == peak.shape
            if same:
                peak, low = torch.maximum(seen, peak), torch.minimum(self.lows[self.call], low)  # type: ignore[arg-type]
            self.peaks[self.call], self.lows[self.call] = peak, low
            before = self.observations.get(self.call, 0) if same else 0
            self.observations[self.call] = before + value.numel() // max(1, peak.numel())
            return
        tail, norm = tail_and_norm(value, self.family)
        self.tails.append(tail)
        self.norms.append(norm)

    def reset(self) -> None:
        self.peaks.clear()
        self.lows.clear()
        self.observations.clear()
        self.tails.clear()
        self.norms.clear()
        self.total, self.forward_seen, self.call = 0, -1, 0

    def counts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """On the device: dead units (ReLU family) or elements in a flat tail (saturating
        family); units fed a constant; the summed squared centred norms (saturating family)."""
        device = next(iter(self.peaks.values())).device if self.peaks else None
        device = self.tails[0].device if self.tails else device
        none = torch.zeros((), dtype=torch.int64, device=device)
        if self.peaks:
            peaks, lows = list(self.peaks.values()), [self.lows[c] for c in self.peaks]
            return dead_units(peaks, lows), unobserved_units(peaks, lows), none.float()
        if self.tails:
            return torch.stack(self.tails).sum(), none, torch.stack(self.norms).float().square().sum()
        return none, none, none.float()

    def count(self) -> torch.Tensor:
        """Dead units (ReLU family) or elements in a flat tail (saturating family), on the device."""
        return self.counts()[0]

    def stats(
        self, count: float, source: SourceRef | None, unobserved: float = 0.0, centred_sq: float = 0.0
    ) -> ActivationStats:
        units = sum(peak.numel() for peak in self.peaks.values()) if self.peaks else 0
        tails = count if self.tails else 0.0
        gain = (
            mean_gain(self.family, self.hard, self.total, tails, centred_sq) if self.tails else float("nan")
        )
        return activation_record(
            name=self.name, type=type(self.module).__name__, family=self.family, after=self.after,
            units=units, count=count if (self.peaks or self.tails) else 0.0, total=self.total, source=source,
            observations=min(self.observations.values(), default=0), unobserved=unobserved, gain=gain,
        )  # fmt: skip


def watch(
    act: ModuleActivation, last_layer: Callable[[], str | None], forwards: Callable[[], int]
) -> RemovableHandle:
    """Hook `act`'s module: a ReLU's input (a pre-hook: a unit is positive exactly when its input
    is, the input's range tells a unit fed a constant from a dead one, and an in-place ReLU has
    not overwritten it yet), a sigmoid/tanh's output."""

    def observe(value: torch.Tensor | None) -> None:
        if act.after is None:
            act.after = last_layer()
        if value is None or value.dim() == 0:
            return
        # detach() is enough to keep these reductions off the graph; a no_grad() block
        # would cost half as much again as the reductions themselves on small outputs.
        act.observe(value.detach(), forwards())

    def pre_hook(module: nn.Module, args: Any) -> None:
        observe(args[0] if args and isinstance(args[0], torch.Tensor) else None)

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        observe(output if type(output) is torch.Tensor else first_tensor_out(output))

    if act.family == "relu":
        return act.module.register_forward_pre_hook(pre_hook)
    return act.module.register_forward_hook(hook)
