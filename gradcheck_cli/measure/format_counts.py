"""--precision, the tensor arithmetic: where a tensor's elements fall against a number format's
limits, what rounding a tensor through a format loses, and a layer run in a format.

Counts stay on the device: a tensor's nonzero magnitudes go into a histogram of their power of two
(torch.frexp's exponent), so every threshold that is a power of two (the smallest normal and
subnormal of every format, and those thresholds divided by a power-of-two loss scale) is read off
the histogram afterwards without another pass; the largest values (not powers of two) are counted
directly. One host transfer at the end of the measurement.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gradcheck_cli.measure.activations import first_tensor_out
from gradcheck_cli.records.precision import NumberFormat

OFFSET = 160
"""Histogram bin of frexp exponent e is e + OFFSET (|x| in [2^(e-1), 2^e)); bin 0 holds zeros and
non-finite values. float32 magnitudes have e in [-148, 128]."""
BINS = 2 * OFFSET


def magnitudes(tensor: torch.Tensor) -> torch.Tensor:
    """|x| in float32, non-finite values set to 0 (they are counted by the probe, not here)."""
    x = tensor.detach().float().abs()
    return torch.where(torch.isfinite(x), x, torch.zeros((), device=x.device))


@dataclass(slots=True)
class Counts:
    """A running histogram of magnitudes, their largest value and, per format, how many overflow."""

    maxima: Sequence[float]
    hist: torch.Tensor | None = None
    over: torch.Tensor | None = None
    peak: torch.Tensor | None = None

    def add(self, tensor: torch.Tensor) -> None:
        x = magnitudes(tensor).flatten()
        if x.numel() == 0:
            return
        exponent = torch.frexp(x).exponent.clamp(1 - OFFSET, OFFSET - 1) + OFFSET
        hist = torch.bincount(torch.where(x != 0, exponent, 0).long(), minlength=BINS)
        over = torch.stack([(x > limit).sum() for limit in self.maxima])
        peak = x.max()
        if self.hist is None or self.over is None or self.peak is None:
            self.hist, self.over, self.peak = hist, over, peak
        else:
            self.hist, self.over, self.peak = (
                self.hist + hist,
                self.over + over,
                torch.maximum(self.peak, peak),
            )

    def merged(self, other: Counts) -> Counts:
        both = Counts(self.maxima)
        for part in (self, other):
            if part.hist is not None and part.over is not None and part.peak is not None:
                if both.hist is None or both.over is None or both.peak is None:
                    both.hist, both.over, both.peak = part.hist, part.over, part.peak
                else:
                    both.hist, both.over = both.hist + part.hist, both.over + part.over
                    both.peak = torch.maximum(both.peak, part.peak)
        return both


@dataclass(frozen=True, slots=True)
class HostCounts:
    """Counts on the host: hist[i] elements with frexp exponent i - OFFSET, hist[0] zeros."""

    hist: tuple[int, ...]
    over: tuple[int, ...]
    peak: float

    @property
    def nonzero(self) -> int:
        return sum(self.hist[1:])

    def below(self, power: int) -> int:
        """Nonzero elements with |x| < 2^power."""
        return sum(self.hist[1 : max(1, min(BINS, power + OFFSET + 1))])

    def quantile_power(self, share: float) -> int:
        """The smallest e with at least `share` of the nonzero elements below 2^e (0 when none)."""
        wanted, running = max(1.0, share * self.nonzero), 0
        for index in range(1, BINS):
            running += self.hist[index]
            if running >= wanted:
                return index - OFFSET
        return 0


def to_host(counts: Sequence[Counts]) -> list[HostCounts]:
    """All counts in one transfer."""
    present = [c for c in counts if c.hist is not None]
    if not present:
        return [_empty(len(c.maxima)) for c in counts]
    rows = [torch.cat([c.hist.float(), c.over.float(), c.peak.float().reshape(1)]) for c in present]  # type: ignore[union-attr]
    values = iter(torch.stack(rows).tolist())
    out = []
    for c in counts:
        if c.hist is None:
            out.append(_empty(len(c.maxima)))
            continue
        row = next(values)
        out.append(
            HostCounts(
                hist=tuple(int(v) for v in row[:BINS]),
                over=tuple(int(v) for v in row[BINS:-1]),
                peak=row[-1],
            )
        )
    return out


def _empty(formats: int) -> HostCounts:
    return HostCounts(hist=(0,) * BINS, over=(0,) * formats, peak=0.0)


def torch_dtype(fmt: NumberFormat) -> torch.dtype:
    dtype = getattr(torch, fmt.dtype)
    assert isinstance(dtype, torch.dtype)
    return dtype


def rounded(tensor: torch.Tensor, fmt: NumberFormat, scale: float | torch.Tensor = 1.0) -> torch.Tensor:
    """`tensor` scaled, stored in the format, read back and unscaled (in the tensor's own dtype)."""
    if isinstance(scale, float) and scale == 1.0:
        return tensor.to(torch_dtype(fmt)).to(tensor.dtype)
    return (tensor * scale).to(torch_dtype(fmt)).to(tensor.dtype) / scale


def tensor_scale(tensor: torch.Tensor, fmt: NumberFormat) -> torch.Tensor:
    """An fp8 recipe's per-tensor scale: the power of two 2^floor(log2(max / amax)) (1 for zeros)."""
    amax = magnitudes(tensor).max()  # float32 (MPS has no float64); the ratio capped at 2^100
    ratio = (fmt.max / amax.clamp(min=2.0**-126)).clamp(max=2.0**100)
    ratio = torch.where(amax > 0, ratio, torch.ones_like(ratio))
    return torch.exp2(torch.floor(torch.log2(ratio))).to(tensor.dtype)


@dataclass(slots=True)
class ErrorSums:
    """Squared L2 error against the float32 values, the squared reference norm, non-finite count."""

    diff: list[torch.Tensor] = field(default_factory=list)
    ref: list[torch.Tensor] = field(default_factory=list)
    nonfinite: list[torch.Tensor] = field(default_factory=list)
    numel: int = 0

    def add(self, low: torch.Tensor, reference: torch.Tensor) -> None:
        finite = torch.isfinite(low)
        kept = torch.where(finite, low, torch.zeros((), dtype=low.dtype, device=low.device))
        wide = torch.float64 if reference.device.type != "mps" else torch.float32
        self.diff.append(torch.linalg.vector_norm(kept - reference, dtype=wide) ** 2)
        self.ref.append(torch.linalg.vector_norm(reference, dtype=wide) ** 2)
        self.nonfinite.append((~finite).sum())
        self.numel += reference.numel()


def relative_error(sums: ErrorSums) -> tuple[float, float]:
    """(relative L2 error, share of non-finite elements); NaN when nothing was compared."""
    if not sums.diff:
        return math.nan, 0.0
    diff, ref, bad = (float(torch.stack(v).sum()) for v in (sums.diff, sums.ref, sums.nonfinite))
    error = math.sqrt(diff / ref) if ref > 0 else (0.0 if diff == 0 else math.inf)
    return error, bad / sums.numel if sums.numel else 0.0


def method_text(fmt: NumberFormat, fallback: list[str]) -> str:
    if not fmt.native_on_cpu:
        return (
            f"each tensor scaled by its own power of two (max/amax), rounded through {fmt.dtype}, "
            "computed in float32 (torch has no fp8 matmul on CPU)"
        )
    if fallback:
        return f"ran in {fmt.dtype}; rounded through it where no kernel ran here: {', '.join(fallback)}"
    return f"ran in {fmt.dtype}"


def float_tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value] if value.is_floating_point() else []
    if isinstance(value, (tuple, list)):
        return [v for v in value if isinstance(v, torch.Tensor) and v.is_floating_point()]
    return []


def _cast_tree(value: Any, cast: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return cast(value) if value.is_floating_point() else value
    if isinstance(value, (tuple, list)):
        return type(value)(_cast_tree(v, cast) for v in value)
    if isinstance(value, dict):
        return {k: _cast_tree(v, cast) for k, v in value.items()}
    return value


def run_in_format(
    module: nn.Module, fmt: NumberFormat, args: Any, kwargs: Any, native: bool
) -> torch.Tensor | None:
    """The module's first output with its inputs, parameters and float buffers in the format.

    native: run in the dtype itself (bf16/fp16). Otherwise (fp8, or a dtype without a kernel
    here) each operand is rounded through the dtype, the arithmetic is float32, and the output is
    rounded through the dtype again, as it would be stored; fp8 with each tensor's own scale."""
    dtype = torch_dtype(fmt)

    def cast(t: torch.Tensor) -> torch.Tensor:
        if native:
            return t.detach().to(dtype)
        return rounded(t.detach(), fmt, tensor_scale(t, fmt) if fmt.tensor_scaled else 1.0)

    state = {n: cast(p) if p.is_floating_point() else p for n, p in module.named_parameters()}
    state |= {n: cast(b) if b.is_floating_point() else b for n, b in module.named_buffers()}
    with torch.no_grad():
        output = torch.func.functional_call(module, state, _cast_tree(args, cast), _cast_tree(kwargs, cast))
    out = first_tensor_out(output)
    if out is None:
        return None
    return out if native else cast(out)
