"""See activations written as function calls (F.relu, torch.sigmoid, x.tanh()) in the user's code.

Module hooks only see nn.ReLU/nn.Sigmoid/nn.Tanh modules. Many models call the function
instead, so a TorchFunctionMode watches the forward pass and measures the outputs of
those calls, keyed by the line of the user's code that made them. Calls made from inside
torch.nn modules (nn.ReLU.forward calls F.relu) are skipped: the module hook counts those.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

# Same definition of saturation as the module probe: derivative under 5% of its maximum.
from gradcheck_cli.probe import gain_sum, tail_count, unit_peaks, unit_range
from gradcheck_cli.stats import ActivationStats, SourceRef

FAMILIES: dict[Any, tuple[str, str]] = {
    F.relu: ("relu", "F.relu"),
    F.relu6: ("relu", "F.relu6"),
    torch.relu: ("relu", "torch.relu"),
    torch.relu_: ("relu", "torch.relu_"),
    torch.Tensor.relu: ("relu", "Tensor.relu"),
    torch.Tensor.relu_: ("relu", "Tensor.relu_"),
    torch.sigmoid: ("sigmoid", "torch.sigmoid"),
    F.sigmoid: ("sigmoid", "F.sigmoid"),
    torch.Tensor.sigmoid: ("sigmoid", "Tensor.sigmoid"),
    torch.tanh: ("tanh", "torch.tanh"),
    F.tanh: ("tanh", "F.tanh"),
    torch.Tensor.tanh: ("tanh", "Tensor.tanh"),
}
_TORCH_ROOT = str(Path(torch.__file__).resolve().parent)
_NN_MODULES = str(Path(torch.nn.modules.__file__).resolve().parent)
_HERE = str(Path(__file__).resolve().parent)


@dataclass(slots=True)
class _Site:
    """One call site: the line of user code, the function called there, its statistics."""

    name: str
    function: str
    family: str
    source: SourceRef
    after: str | None
    peak: torch.Tensor | None = None
    """Per unit, the largest value seen (dead when never above 0)."""
    tail: torch.Tensor | None = None
    gain: torch.Tensor | None = None
    low: torch.Tensor | None = None
    high: torch.Tensor | None = None
    """Per unit, the smallest and largest input (a unit whose input never varies is not observed)."""
    total: int = 0


class FunctionalActivations(TorchFunctionMode):
    """`with FunctionalActivations(last_layer) as seen:` then `seen.stats()`.

    `last_layer` returns the name of the parameter-owning module that ran last (the
    probe knows it), so each call site is attributed to the layer it follows.
    """

    def __init__(self, last_layer: Any = None) -> None:
        super().__init__()
        self._last_layer = last_layer or (lambda: None)
        self._sites: dict[tuple[object, ...], _Site] = {}
        self._passes = 0

    def watch(self) -> contextlib.AbstractContextManager[object]:
        """The mode for one forward pass; nothing once a first pass found no functional activation.

        Dispatching every torch call through Python costs 5-10% of a step on models built
        from nn.ReLU/nn.Tanh modules, where the module hooks already see everything.
        """
        if self._passes and not self._sites:
            return contextlib.nullcontext()
        self._passes += 1
        return self

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        family = FAMILIES.get(func)
        inp = args[0] if family and args and isinstance(args[0], torch.Tensor) else None
        # The input's range is taken before the call: relu_ overwrites it.
        span = unit_range(inp.detach()) if inp is not None and inp.dim() > 0 and family[0] == "relu" else None  # type: ignore[index]
        out = func(*args, **(kwargs or {}))
        if family is not None and isinstance(out, torch.Tensor) and out.dim() > 0:
            caller = _user_caller(sys._getframe(1))
            if caller is not None:
                site = self._site(family, caller, out)
                _accumulate(site, out.detach())
                _accumulate_range(site, span)
        return out

    def _site(self, family: tuple[str, str], caller: FrameType, out: torch.Tensor) -> _Site:
        # One line of a block's forward runs in every block: the layer before it tells them
        # apart, and the unit count keeps differently sized calls from being merged.
        file, line, after = caller.f_code.co_filename, caller.f_lineno, self._last_layer()
        key = (file, line, family[1], after, _unit_shape(out))
        if key not in self._sites:
            ref = SourceRef.at(file, line)
            self._sites[key] = _Site(
                name=f"{after}:{family[1]}" if after else f"{family[1]}@{Path(file).name}:{line}",
                function=family[1],
                family=family[0],
                source=ref,
                after=after,
            )
        return self._sites[key]

    def stats(self) -> tuple[ActivationStats, ...]:
        return tuple(_to_stats(site) for site in self._sites.values())


def _user_caller(frame: FrameType | None) -> FrameType | None:
    """The first frame outside torch and gradcheck; None when a torch.nn module made the call."""
    while frame is not None:
        file = frame.f_code.co_filename
        if file.startswith(_NN_MODULES):
            return None
        if not file.startswith(_TORCH_ROOT) and not file.startswith(_HERE):
            return frame
        frame = frame.f_back
    return None


def _unit_dim(out: torch.Tensor) -> int:
    """Units: channels of an image-like tensor (N, C, H, W), else the last dimension."""
    return 1 if out.dim() >= 4 else out.dim() - 1


def _unit_shape(out: torch.Tensor) -> int:
    return out.shape[_unit_dim(out)]


def _accumulate(site: _Site, out: torch.Tensor) -> None:
    site.total += out.numel()
    if site.family == "relu":
        peak = unit_peaks(out)
        site.peak = peak if site.peak is None else torch.maximum(site.peak, peak)
        return
    tail, gain = tail_count(out, site.family), gain_sum(out, site.family)
    site.tail = tail if site.tail is None else site.tail + tail
    site.gain = gain if site.gain is None else site.gain + gain


def _accumulate_range(site: _Site, span: tuple[torch.Tensor, torch.Tensor] | None) -> None:
    if span is None or site.peak is None or span[0].shape != site.peak.shape:
        return
    low, high = span
    site.low = low if site.low is None else torch.minimum(site.low, low)
    site.high = high if site.high is None else torch.maximum(site.high, high)


def _to_stats(site: _Site) -> ActivationStats:
    units, dead, saturated, unobserved, mean_gain = 0, 0.0, 0.0, 0.0, float("nan")
    if site.peak is not None:
        units = site.peak.numel()
        never = site.peak <= 0  # NaN is not <= 0: a NaN unit is not dead
        constant = site.high <= site.low if site.low is not None and site.high is not None else never & False
        dead = float((never & ~constant).float().mean())
        unobserved = float((never & constant).float().mean())
    if site.tail is not None and site.total:
        saturated = float(site.tail) / site.total
        mean_gain = float(site.gain) / site.total if site.gain is not None else mean_gain
    return ActivationStats(
        name=site.name,
        type=site.function,
        family=site.family,
        after=site.after,
        units=units,
        dead_fraction=dead,
        saturated_fraction=saturated,
        observations=site.total // units if units else 0,
        unobserved_fraction=unobserved,
        mean_gain=mean_gain,
        source=site.source,
    )
