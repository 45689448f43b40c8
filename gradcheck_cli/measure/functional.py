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

from gradcheck_cli.load.source import ref_at, user_caller

# Same definitions as the module probe: dead units, saturation (derivative under 5% of its maximum).
from gradcheck_cli.measure.activations import (
    activation_record,
    dead_units,
    mean_gain,
    tail_and_norm,
    unit_dim,
    unit_lows,
    unit_peaks,
    unobserved_units,
)
from gradcheck_cli.records.stats import ActivationStats, SourceRef

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


@dataclass(slots=True)
class _Site:
    """One call site: the line of user code, the function called there, its statistics."""

    name: str
    function: str
    family: str
    source: SourceRef
    after: str | None
    peak: torch.Tensor | None = None
    """Per unit, the largest input seen (dead when never above 0)."""
    low: torch.Tensor | None = None
    """Per unit, the smallest input seen (fed a constant, not dead, when it equals the peak)."""
    tail: torch.Tensor | None = None
    centred_sq: torch.Tensor | None = None
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
        self.attention_called = False
        """F.scaled_dot_product_attention ran in a watched pass (`attention_seen`)."""

    def watch(self) -> contextlib.AbstractContextManager[object]:
        """The mode for one forward pass; nothing once a first pass found no functional activation.

        Dispatching every torch call through Python costs 5-10% of a step on models built
        from nn.ReLU/nn.Tanh modules, where the module hooks already see everything.
        """
        if self._passes and not self._sites:
            return contextlib.nullcontext()
        self._passes += 1
        return self

    def attention_seen(self) -> bool | None:
        """Whether the watched forward called F.scaled_dot_product_attention; None: none was watched."""
        return self.attention_called if self._passes else None

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func is F.scaled_dot_product_attention:
            self.attention_called = True
        family = FAMILIES.get(func)
        inp = args[0] if family and args and isinstance(args[0], torch.Tensor) else None
        # A ReLU is measured on its input (positive exactly when the output is), taken before
        # the call: relu_ overwrites it. Reduced only when the call comes from user code.
        relu_input = inp.detach() if family and family[0] == "relu" and inp is not None else None
        out = func(*args, **(kwargs or {}))
        if family is not None and isinstance(out, torch.Tensor) and out.dim() > 0:
            caller = user_caller(sys._getframe(1), within=("torch", "gradcheck"))
            if caller is not None:
                site = self._site(family, caller, out)
                if relu_input is not None and relu_input.shape == out.shape:
                    _accumulate(site, relu_input)
                elif family[0] != "relu":
                    _accumulate(site, out.detach())
        return out

    def _site(self, family: tuple[str, str], caller: FrameType, out: torch.Tensor) -> _Site:
        # One line of a block's forward runs in every block: the layer before it tells them
        # apart, and the unit count keeps differently sized calls from being merged.
        file, line, after = caller.f_code.co_filename, caller.f_lineno, self._last_layer()
        key = (file, line, family[1], after, _unit_shape(out))
        if key not in self._sites:
            ref = ref_at(file, line)
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


def _unit_shape(out: torch.Tensor) -> int:
    return out.shape[unit_dim(out)]


def _accumulate(site: _Site, value: torch.Tensor) -> None:
    site.total += value.numel()
    if site.family == "relu":
        peak, low = unit_peaks(value), unit_lows(value)
        site.peak = peak if site.peak is None else torch.maximum(site.peak, peak)
        site.low = low if site.low is None else torch.minimum(site.low, low)
        return
    tail, norm = tail_and_norm(value, site.family)
    site.tail = tail if site.tail is None else site.tail + tail
    square = norm.square()
    site.centred_sq = square if site.centred_sq is None else site.centred_sq + square


def _to_stats(site: _Site) -> ActivationStats:
    units = site.peak.numel() if site.peak is not None else 0
    unobserved, gain = 0.0, float("nan")
    if site.peak is not None and site.low is not None:
        count = float(dead_units([site.peak], [site.low]))
        unobserved = float(unobserved_units([site.peak], [site.low]))
    else:
        count = float(site.tail) if site.tail is not None else 0.0
        centred = float(site.centred_sq) if site.centred_sq is not None else 0.0
        gain = mean_gain(site.family, False, site.total, count, centred)
    return activation_record(
        name=site.name, type=site.function, family=site.family, after=site.after,
        units=units, count=count, total=site.total, source=site.source,
        observations=site.total // units if units else 0, unobserved=unobserved, gain=gain,
    )  # fmt: skip
