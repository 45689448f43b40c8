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

# Same definitions as the module probe: dead units, saturation (derivative under 5% of its maximum).
from gradcheck_cli.activations import activation_record, dead_units, tail_count, unit_dim, unit_peaks
from gradcheck_cli.source import ref_at, user_caller
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
        out = func(*args, **(kwargs or {}))
        family = FAMILIES.get(func)
        if family is not None and isinstance(out, torch.Tensor) and out.dim() > 0:
            caller = user_caller(sys._getframe(1), within=("torch", "gradcheck"))
            if caller is not None:
                _accumulate(self._site(family, caller, out), out.detach())
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


def _accumulate(site: _Site, out: torch.Tensor) -> None:
    site.total += out.numel()
    if site.family == "relu":
        peak = unit_peaks(out)
        site.peak = peak if site.peak is None else torch.maximum(site.peak, peak)
        return
    tail = tail_count(out, site.family)
    site.tail = tail if site.tail is None else site.tail + tail


def _to_stats(site: _Site) -> ActivationStats:
    units = site.peak.numel() if site.peak is not None else 0
    if site.peak is not None:
        count = float(dead_units([site.peak]))
    else:
        count = float(site.tail) if site.tail is not None else 0.0
    return activation_record(
        name=site.name, type=site.function, family=site.family, after=site.after,
        units=units, count=count, total=site.total, source=site.source,
    )  # fmt: skip
