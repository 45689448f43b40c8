"""GradientProbe: hooks that measure gradients per layer. It measures; it never judges or prints.

Output gradients are taken with tensor hooks on module outputs, registered from forward
hooks, not with register_full_backward_hook, which breaks on in-place activations
(pytorch/pytorch#61519). Every statistic is reduced on the device; each batch's scalars
are stacked into one tensor and brought to the host with a single .tolist().

Cost rules (benchmarks/overhead.py measures them): hooks do one reduction each and keep no
tensor but scalars; parameter gradients are reduced with foreach norms and count_nonzero
(a bool `g == 0` then `.sum()` costs 4x more on CPU); weight norms are taken once per run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from gradcheck_cli.compat import ConvNd, NormBase, foreach_norm
from gradcheck_cli.layer_kinds import is_conv, kind_of
from gradcheck_cli.stats import ActivationStats, LayerStats, SourceRef

RELU_FAMILY = (nn.ReLU, nn.ReLU6)
SATURATING = {nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.Hardsigmoid: "sigmoid", nn.Hardtanh: "tanh"}
# Saturation: the local derivative is under 5% of its maximum.
SIGMOID_TAIL = 0.0127  # s(1-s) < 0.0125 (5% of 0.25) outside [0.0127, 0.9873]
TANH_TAIL = 0.975  # 1 - y^2 < 0.05 beyond |y| = 0.975


def first_tensor_out(output: Any) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


def dense(value: torch.Tensor) -> torch.Tensor:
    """A reduction of an FSDP2 (DTensor) gradient or weight as a plain tensor: the global value."""
    full_tensor = getattr(value, "full_tensor", None)
    return full_tensor() if full_tensor is not None else value


def unit_peaks(out: torch.Tensor) -> torch.Tensor:
    """Per unit (channels of an (N, C, ...) image tensor, else the last dimension), its largest value.

    A ReLU unit is alive when its peak is positive: one amax reduction costs a twentieth of
    `(out > 0).any(dims)` on CPU and allocates nothing full-size.
    """
    ndim = out.dim()
    dim = unit_dim(out)
    reduce = [d for d in range(ndim) if d != dim]
    return out.amax(dim=reduce) if reduce else out


CHANNEL_FIRST = (ConvNd, NormBase, nn.GroupNorm)
CHANNEL_LAST = (nn.Linear, nn.Embedding, nn.LayerNorm, nn.MultiheadAttention, nn.RNNBase, nn.RNNCellBase)


def feature_dim(module: nn.Module, out: torch.Tensor) -> int:
    """The dimension holding a layer's features: channels (dim 1) for convolutions and
    BatchNorm/GroupNorm, the last dimension for Linear/LayerNorm/attention/recurrent layers
    (whatever the rank: a Linear on (B, T, C) has C features, not T*C)."""
    if isinstance(module, CHANNEL_FIRST) and out.dim() > 1:
        return 1
    if isinstance(module, CHANNEL_LAST):
        return out.dim() - 1
    return unit_dim(out)


def unit_dim(out: torch.Tensor) -> int:
    """Units: channels of an image-like tensor (N, C, ...), else the last dimension."""
    return 1 if out.dim() >= 4 else out.dim() - 1


def unit_lows(value: torch.Tensor) -> torch.Tensor:
    """Per unit, its smallest value."""
    dim = unit_dim(value)
    reduce = [d for d in range(value.dim()) if d != dim]
    return value.amin(dim=reduce) if reduce else value


def tail_and_norm(out: torch.Tensor, family: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Elements in a flat tail, and the L2 norm of the output centred on the derivative's peak
    (s - 0.5 for sigmoid, y for tanh): the summed relative derivative is numel - c * norm^2."""
    centred = out - 0.5 if family == "sigmoid" else out
    norm = torch.linalg.vector_norm(centred, dtype=torch.float32)
    if family == "sigmoid":
        return centred.abs_().gt_(0.5 - SIGMOID_TAIL).sum(), norm
    return centred.abs().gt_(TANH_TAIL).sum(), norm


CENTRED_SCALE = {"sigmoid": 4.0, "tanh": 1.0}
"""c in: relative derivative = 1 - c * centred^2 (sigmoid: 4s(1-s) = 1 - 4(s-0.5)^2)."""


def unit_range(inp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per unit, the smallest and largest input value (a unit whose input never varies is not observed)."""
    dim = unit_dim(inp)
    reduce = [d for d in range(inp.dim()) if d != dim]
    if not reduce:
        return inp, inp
    return inp.amin(dim=reduce), inp.amax(dim=reduce)


def gain_sum(out: torch.Tensor, family: str, hard: bool = False) -> torch.Tensor:
    """Sum over elements of the local derivative relative to its maximum (1 at the linear point).

    sigmoid: s(1-s) / 0.25; tanh: 1 - y^2. Hard variants have derivative 1 inside the clamp
    and 0 at it. The mean of this is the factor by which the activation scales the gradient.
    """
    if hard:
        return out.numel() - tail_count(out, family)
    if family == "sigmoid":
        return (out * (1 - out)).sum() * 4.0
    return out.numel() - out.square().sum()


def tail_count(out: torch.Tensor, family: str) -> torch.Tensor:
    """Elements of a sigmoid/tanh output in a flat tail (derivative under 5% of its maximum)."""
    if family == "sigmoid":
        return (out - 0.5).abs_().gt_(0.5 - SIGMOID_TAIL).sum()
    return out.abs().gt_(TANH_TAIL).sum()


def direct_params(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return list(module.named_parameters(recurse=False))


# The columns of one batch's raw sums per layer (_Layer.rows, batch_sums()).
ROW_FIELDS = (
    "act_sq",
    "act_numel",
    "grad_sq",
    "zero_count",
    "grad_numel",
    "nonfinite",
    "has_grad",
    "missed",
)


@dataclass(slots=True)
class _Layer:
    name: str
    module: nn.Module
    params: list[nn.Parameter]
    shared_with: str | None = None
    order: int = -1
    calls: int = 0
    width: int = 0
    spatial: tuple[int, ...] = ()
    features: int = 0
    act_numel: int = 0
    hooks_set: int = 0
    """Output-gradient hooks registered this batch (compared with those that fired: a miss is never 0)."""
    rows: list[list[float]] = field(default_factory=list)
    """Per batch: the ROW_FIELDS."""


@dataclass(slots=True)
class _Activation:
    name: str
    module: nn.Module
    family: str
    after: str | None = None
    peaks: dict[int, torch.Tensor] = field(default_factory=dict)
    """Per call within one forward (one nn.ReLU is often reused on several widths), the largest
    value of each unit so far: a ReLU unit is dead when it never exceeds 0."""
    tails: list[torch.Tensor] = field(default_factory=list)
    """Per call, the count of elements in a flat tail (summed once, at the end)."""
    norms: list[torch.Tensor] = field(default_factory=list)
    """Per call, the L2 norm of (sigmoid - 0.5) or of tanh: the mean relative derivative is
    1 - 4(s - 0.5)^2 (sigmoid) or 1 - y^2 (tanh) averaged, so these norms give it exactly."""
    lows: dict[int, torch.Tensor] = field(default_factory=dict)
    """Per call (ReLU family), per unit: the smallest input seen. A unit whose input never varies
    (exactly 0 behind a closed zero-initialised gate) is not observed, not dead."""
    hard: bool = False
    observations: dict[int, int] = field(default_factory=dict)
    """Per call, the values each unit was observed on (samples x positions, over batches)."""
    total: int = 0
    forward_seen: int = -1
    call: int = 0


class GradientProbe:
    """`with GradientProbe(model) as probe:` run forward/backward, call `probe.collect()` per batch."""

    def __init__(self, model: nn.Module, sources: dict[str, SourceRef] | None = None) -> None:
        self.model = model
        self.sources = sources or {}
        self.layers: list[_Layer] = []
        self.activations: list[_Activation] = []
        self._handles: list[RemovableHandle] = []
        self._order: list[_Layer] = []
        self._last_layer: str | None = None
        self._was_training = model.training
        self._forwards = 0
        self._act_sq: list[torch.Tensor] = []
        self._act_owner: list[int] = []
        self._index: dict[str, int] = {}

    @property
    def last_layer(self) -> str | None:
        """The parameter-owning module that ran last (functional activations are attributed to it)."""
        return self._last_layer

    # -- set-up and tear-down ------------------------------------------------------------
    def __enter__(self) -> GradientProbe:
        owners: dict[int, str] = {}
        try:
            for name, module in self.model.named_modules():
                self._attach(name or type(module).__name__, module, owners)
            self._handles.append(self.model.register_forward_pre_hook(self._on_model_forward))
        except BaseException:
            self._remove()
            raise
        self.model.train()
        return self

    def __exit__(self, *exc: object) -> None:
        self._remove()
        self.model.train(self._was_training)

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _attach(self, name: str, module: nn.Module, owners: dict[int, str]) -> None:
        params = [p for _, p in direct_params(module)]
        if params:
            shared = next((owners[id(p)] for p in params if id(p) in owners), None)
            for p in params:
                owners.setdefault(id(p), name)
            own = [p for p in params if owners[id(p)] == name]
            layer = _Layer(name=name, module=module, params=own, shared_with=shared)
            self._index[name] = len(self.layers)
            self.layers.append(layer)
            self._handles.append(module.register_forward_hook(self._layer_hook(layer)))
        family = "relu" if isinstance(module, RELU_FAMILY) else SATURATING.get(type(module))
        if family:
            hard = isinstance(module, (nn.Hardsigmoid, nn.Hardtanh))
            act = _Activation(name=name, module=module, family=family, hard=hard)
            self.activations.append(act)
            if family == "relu":  # the input, before an in-place ReLU overwrites it
                self._handles.append(module.register_forward_pre_hook(self._activation_hook(act)))
            else:
                self._handles.append(module.register_forward_hook(self._activation_hook(act)))

    # -- hooks ------------------------------------------------------------------------------
    def _on_model_forward(self, module: nn.Module, args: Any) -> None:
        self._forwards += 1

    def _layer_hook(self, layer: _Layer) -> Callable[..., None]:
        # Runs on every forward of every layer: the tensor hook is built once, not per call.
        grad_hook = self._grad_hook(layer)

        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if layer.order < 0:
                layer.order = len(self._order)
                self._order.append(layer)
            layer.calls += 1
            self._last_layer = layer.name
            out = output if type(output) is torch.Tensor else first_tensor_out(output)
            if out is None or not out.requires_grad:
                return
            if not layer.width and out.dim() > 0:
                self._record_shape(layer, module, out)
            layer.act_numel += out.numel()
            layer.hooks_set += 1
            hook_target(out, args).register_hook(grad_hook)

        return hook

    @staticmethod
    def _record_shape(layer: _Layer, module: nn.Module, out: torch.Tensor) -> None:
        layer.width = out[0].numel() if out.dim() > 1 else 1
        layer.features = out.shape[feature_dim(module, out)]
        if is_conv(module):
            layer.spatial = tuple(out.shape[2:])

    def _grad_hook(self, layer: _Layer) -> Callable[[torch.Tensor], None]:
        index = self._index[layer.name]
        norms, owners = self._act_sq, self._act_owner  # cleared in place by collect(), never rebound

        def hook(grad: torch.Tensor | None) -> None:
            if grad is None:  # autograd passes None for an output that did not reach the loss
                return
            # vector_norm refuses dtype=float32 for a float64 grad ("narrowing"): keep float64 there
            if grad.dtype == torch.float64:
                norms.append(torch.linalg.vector_norm(grad))
            else:
                norms.append(torch.linalg.vector_norm(grad, dtype=torch.float32))
            owners.append(index)

        return hook

    def _activation_hook(self, act: _Activation) -> Callable[..., None]:
        def observe(value: torch.Tensor | None) -> None:
            if act.after is None:
                act.after = self._last_layer
            if value is None or value.dim() == 0:
                return
            if act.forward_seen != self._forwards:
                act.forward_seen, act.call = self._forwards, 0
            act.call += 1
            # detach() is enough to keep these reductions off the graph; a no_grad() block
            # would cost half as much again as the reductions themselves on small outputs.
            self._activation_stats(act, value.detach())

        if act.family == "relu":
            # A ReLU unit is positive exactly when its input is: its input is measured (a pre-hook),
            # so its range also tells a unit fed a constant (0 behind a closed gate) from a dead one.
            def pre_hook(module: nn.Module, args: Any) -> None:
                observe(args[0] if args and isinstance(args[0], torch.Tensor) else None)

            return pre_hook

        def hook(module: nn.Module, args: Any, output: Any) -> None:
            observe(output if type(output) is torch.Tensor else first_tensor_out(output))

        return hook

    @staticmethod
    def _activation_stats(act: _Activation, value: torch.Tensor) -> None:
        act.total += value.numel()
        if act.family == "relu":
            peak, low = unit_peaks(value), unit_lows(value)
            seen = act.peaks.get(act.call)
            same = seen is not None and seen.shape == peak.shape
            if same:
                peak, low = torch.maximum(seen, peak), torch.minimum(act.lows[act.call], low)  # type: ignore[arg-type]
            act.peaks[act.call], act.lows[act.call] = peak, low
            act.observations[act.call] = act.observations.get(act.call, 0) if same else 0
            act.observations[act.call] += value.numel() // max(1, peak.numel())
            return
        tail, norm = tail_and_norm(value, act.family)
        act.tails.append(tail)
        act.norms.append(norm)

    def reset(self) -> None:
        """Forget what was measured, keep the hooks: the next batches start a fresh measurement.

        A training-loop monitor measuring every step re-uses one attached probe this way;
        attaching hooks to every module again would cost more than the step itself.
        """
        self._forwards = 0
        self._act_sq.clear()
        self._act_owner.clear()
        for layer in self.layers:
            layer.rows.clear()
            layer.calls = layer.act_numel = 0
        for act in self.activations:
            act.peaks.clear()
            act.tails.clear()
            act.norms.clear()
            act.lows.clear()
            act.observations.clear()
            act.total, act.forward_seen, act.call = 0, -1, 0

    # -- per-batch collection ------------------------------------------------------------
    def collect(self, unscale: float = 1.0) -> None:
        """After backward: reduce this batch's statistics on the device, one host transfer.

        `unscale` is the loss scale the backward ran under (float16 with a GradScaler):
        norms are divided by it, so the statistics describe the unscaled gradients.
        """
        grads = ParameterGrads.gather([layer.params for layer in self.layers])
        act_count = len(self._act_sq)
        host = _to_host(*grads.device_scalars(), self._act_sq)
        grad_sq, zeros = grads.per_group(host[: len(host) - act_count], len(self.layers), unscale)
        act_sq = [0.0] * len(self.layers)
        for owner, norm in zip(self._act_owner, host[len(host) - act_count :], strict=True):
            act_sq[owner] += (norm / unscale) ** 2  # squared on the host in double: no float32 overflow
        fired = set(self._act_owner)
        for i, layer in enumerate(self.layers):
            nonfinite = int(not math.isfinite(grad_sq[i])) + int(not math.isfinite(act_sq[i]))
            # A hook that never fired while the parameters got a gradient is a miss, not a 0.
            missed = layer.hooks_set > 0 and i not in fired and grad_sq[i] > 0
            row = [act_sq[i], float(layer.act_numel), grad_sq[i], zeros[i], float(grads.numel[i])]
            layer.rows.append([*row, float(nonfinite), float(grads.has_grad[i]), float(missed)])
            layer.act_numel = layer.hooks_set = 0
        self._act_sq.clear()
        self._act_owner.clear()

    # -- combining processes (torch.distributed) ----------------------------------------------
    def batch_sums(self) -> torch.Tensor:
        """float64 [batches, layers, len(ROW_FIELDS)]: each collected batch's raw sums, layers in attach order."""
        rows = [layer.rows for layer in self.layers]
        batches = len(rows[0]) if rows else 0
        sums = (
            torch.tensor(rows, dtype=torch.float64)
            if batches
            else torch.zeros(len(self.layers), 0, len(ROW_FIELDS))
        )
        return sums.reshape(len(self.layers), batches, len(ROW_FIELDS)).transpose(0, 1).double()

    def replace_batch_sums(self, sums: torch.Tensor) -> None:
        """Install combined raw sums (the layout of batch_sums, any number of batches)."""
        host = sums.double().transpose(0, 1).tolist()
        for layer, rows in zip(self.layers, host, strict=True):
            layer.rows = rows

    def sum_counters(self, reduce_sum: Callable[[torch.Tensor], None]) -> None:
        """Sum call counts and activation counters over processes; `reduce_sum` sums a tensor in place.

        Every process must have run at least one forward (the ReLU unit masks need their size)."""
        counts = [float(self._forwards)] + [float(layer.calls) for layer in self.layers]
        measured = [self._unit_count(act) for act in self.activations]
        tails = _to_host([m[0] for m in measured], [m[2] for m in measured])
        n = len(self.activations)
        for i, act in enumerate(self.activations):
            counts += [float(act.total), tails[i] if act.tails else 0.0, tails[n + i]]
        summed = torch.tensor(counts, dtype=torch.float64)
        reduce_sum(summed)
        values = summed.tolist()
        self._forwards = int(values[0])
        for i, layer in enumerate(self.layers, start=1):
            layer.calls = int(values[i])
        for i, act in enumerate(self.activations):
            total, tail, gain = values[1 + len(self.layers) + 3 * i : 4 + len(self.layers) + 3 * i]
            act.total = int(total)
            act.tails = [torch.tensor(tail)] if act.family != "relu" else []
            act.norms = [torch.tensor(gain).sqrt()] if act.family != "relu" else []
            for call in sorted(act.peaks):  # every process ran the same calls, in the same order
                alive = (act.peaks[call] > 0).to(torch.float64)
                varied = (act.peaks[call] > act.lows[call]).to(torch.float64)
                reduce_sum(alive)
                reduce_sum(varied)
                act.peaks[call] = alive  # > 0 where any process saw the unit positive
                act.lows[call] = -(varied > 0).to(torch.float64)  # below the peak where any varied

    # -- results ------------------------------------------------------------------------------
    def layer_stats(self) -> tuple[LayerStats, ...]:
        """Per-layer statistics, in forward execution order (never-called layers last)."""
        weights = self._weight_norms()
        ordered = sorted(self.layers, key=lambda layer: (layer.order < 0, layer.order))
        forwards = max(1, self._forwards)
        return tuple(self._stats(layer, i, *weights[layer.name], forwards) for i, layer in enumerate(ordered))

    def _weight_norms(self) -> dict[str, tuple[float, float]]:
        """Per layer, its parameters' L2 norm and its init_scale, from one host transfer."""
        params = [p for layer in self.layers for p in layer.params]
        if not params:
            return {layer.name: (0.0, math.nan) for layer in self.layers}
        with torch.no_grad():
            stacked = torch.stack([dense(n).double() for n in foreach_norm([p.detach() for p in params])])
            squares: list[float] = stacked.square().tolist()
        out: dict[str, tuple[float, float]] = {}
        it = iter(squares)
        for layer in self.layers:
            own = [next(it) for _ in layer.params]
            out[layer.name] = (math.sqrt(sum(own)), init_scale(layer.params, own))
        return out

    def _stats(
        self, layer: _Layer, index: int, weight_norm: float, scale: float, forwards: int
    ) -> LayerStats:
        rows = layer.rows or [[math.nan, 0.0, math.nan, 0.0, 0.0, 0.0, 0.0, 0.0]]
        act_norms = [math.sqrt(r[0]) if r[1] and not r[7] else math.nan for r in rows]
        act_rms = [math.sqrt(r[0] / r[1]) if r[1] and not r[7] else math.nan for r in rows]
        grad_norms = [math.sqrt(r[2]) for r in rows]
        zero = sum(r[3] for r in rows) / max(1.0, sum(r[4] for r in rows))
        has_grad = any(r[6] for r in rows)
        grad_norm = _median(grad_norms) if has_grad else math.nan
        trainable = any(p.requires_grad for p in layer.params) if layer.params else False
        return LayerStats(
            name=layer.name,
            type=type(layer.module).__name__,
            index=index,
            parameters=sum(p.numel() for p in layer.params),
            trainable=trainable or (layer.shared_with is not None and not layer.params),
            grad_norm=grad_norm,
            weight_norm=weight_norm,
            grad_weight_ratio=grad_norm / weight_norm if weight_norm > 0 else math.nan,
            act_grad_rms=_median(act_rms),
            act_grad_norm=_median(act_norms),
            zero_grad_fraction=zero,
            nonfinite=int(sum(r[5] for r in rows)),
            calls=max(1, round(layer.calls / forwards)) if layer.calls else 0,
            width=layer.width,
            spatial=layer.spatial,
            role=role_of(layer.name),
            kind=kind_of(layer.module),
            shared_with=layer.shared_with,
            has_grad=has_grad or not layer.params,
            hooked=layer.order >= 0,
            measured=not all(r[7] for r in rows),
            features=layer.features,
            init_scale=scale,
            batch_act_grad_norm=tuple(act_norms),
            source=self.sources.get(layer.name),
        )

    def activation_stats(self) -> tuple[ActivationStats, ...]:
        # One host transfer for all activations: per activation, dead units or tail count,
        # units whose input never varied, and the summed relative derivative.
        counts = [self._unit_count(act) for act in self.activations]
        host = _to_host([c[0] for c in counts], [c[1] for c in counts], [c[2] for c in counts])
        n = len(self.activations)
        return tuple(
            self._activation_record(act, host[i], host[n + i], host[2 * n + i])
            for i, act in enumerate(self.activations)
        )

    def _activation_record(
        self, act: _Activation, count: float, unobserved: float, centred_sq: float
    ) -> ActivationStats:
        units, dead, saturated, mean_gain = 0, 0.0, 0.0, math.nan
        if act.peaks:
            units = sum(peak.numel() for peak in act.peaks.values())
            dead = count / units if units else 0.0
        elif act.tails and act.total:
            saturated = count / act.total
            # hard variants: derivative 1 inside the clamp, 0 at it
            lost = count if act.hard else CENTRED_SCALE[act.family] * centred_sq
            mean_gain = max(0.0, act.total - lost) / act.total
        return ActivationStats(
            name=act.name,
            type=type(act.module).__name__,
            family=act.family,
            after=act.after,
            units=units,
            dead_fraction=dead,
            saturated_fraction=saturated,
            observations=min(act.observations.values(), default=0),
            unobserved_fraction=unobserved / units if units else 0.0,
            mean_gain=mean_gain,
            source=self.sources.get(act.name),
        )

    @staticmethod
    def _unit_count(act: _Activation) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """On the device: dead units (ReLU family: never positive although their input varied)
        or elements in a flat tail (saturating family); units whose input never varied; and the
        summed squared centred norms (saturating family, for the mean derivative)."""
        device = next(iter(act.peaks.values())).device if act.peaks else None
        device = act.tails[0].device if act.tails else device
        none = torch.zeros((), dtype=torch.int64, device=device)
        if act.peaks:
            dead, unobserved = [], []
            for call, peak in act.peaks.items():
                constant = peak <= act.lows[call]
                never = peak <= 0  # NaN is not <= 0: a unit that produced NaN is not dead
                dead.append((never & ~constant).sum())
                unobserved.append((never & constant).sum())
            return torch.stack(dead).sum(), torch.stack(unobserved).sum(), none.float()
        if act.tails:
            return torch.stack(act.tails).sum(), none, torch.stack(act.norms).float().square().sum()
        return none, none, none.float()


@dataclass(slots=True)
class ParameterGrads:
    """This batch's parameter gradients, grouped by layer, reduced with foreach ops.

    The public face of the probe's parameter statistics: `benchmarks/overhead.py` times it
    alone, and GradientProbe.collect() uses it with the output-gradient norms appended.
    """

    grads: list[torch.Tensor]
    owner: list[int]
    """Per gradient, the index of its group."""
    sizes: list[int]
    """Per gradient, its number of elements."""
    numel: list[int]
    """Per group, the elements of the parameters that have a gradient."""
    has_grad: list[bool]

    @classmethod
    def gather(cls, groups: Sequence[Sequence[nn.Parameter]]) -> ParameterGrads:
        found = cls(grads=[], owner=[], sizes=[], numel=[0] * len(groups), has_grad=[False] * len(groups))
        for i, group in enumerate(groups):
            for p in group:
                grad = p.grad
                if grad is not None:
                    size = grad.numel()
                    found.grads.append(grad)
                    found.owner.append(i)
                    found.sizes.append(size)
                    found.numel[i] += size
                    found.has_grad[i] = True
        return found

    def device_scalars(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per gradient its L2 norm (float32), and per gradient its count of non-zero elements.

        A norm is non-finite exactly when some element is, so no separate NaN pass is needed.
        """
        if not self.grads:
            return [], []
        # float64 gradients keep their precision (foreach_norm refuses to narrow them).
        wide = self.grads[0].dtype == torch.float64
        norms = foreach_norm(self.grads, 2) if wide else foreach_norm(self.grads, 2, dtype=torch.float32)
        # dense(): FSDP2 shards reduce to their global value (DTensor -> plain tensor).
        return [dense(n) for n in norms], [dense(torch.count_nonzero(g)) for g in self.grads]

    def per_group(
        self, host: list[float], groups: int, unscale: float = 1.0
    ) -> tuple[list[float], list[float]]:
        """From device_scalars() on the host: per group, squared gradient norm and zero count."""
        grad_sq, zeros = [0.0] * groups, [0.0] * groups
        count = len(self.grads)
        for owner, norm, nonzero, size in zip(
            self.owner, host[:count], host[count:], self.sizes, strict=True
        ):
            grad_sq[owner] += (norm / unscale) ** 2
            zeros[owner] += size - nonzero
        return grad_sq, zeros

    def measure(self, groups: int) -> tuple[list[float], list[float]]:
        """Squared gradient norm and zero count per group, with one host transfer."""
        return self.per_group(_to_host(*self.device_scalars()), groups)


def _to_host(*groups: list[torch.Tensor]) -> list[float]:
    """Lists of device scalars, each list of one dtype, to Python floats with a single transfer.

    Widened to float64 first (float32 on MPS, which has no float64), so that a count of
    up to 2^53 elements and a squared norm above 3e38 survive.
    """
    stacks = [torch.stack(group) for group in groups if group]
    if not stacks:
        return []
    wide = torch.float32 if stacks[0].device.type == "mps" else torch.float64
    host: list[float] = torch.cat([stack.to(wide) for stack in stacks]).tolist()
    return host


def hook_target(out: torch.Tensor, args: Any) -> torch.Tensor:
    """The tensor whose gradient is dL/d(out): `out`, or the base it is a whole view of.

    nn.Linear on a 3-D or 4-D input returns a view of a 2-D result. An in-place op on that
    view (nn.ReLU(inplace=True)) rewrites the view's history, and a hook on the view never
    fires; a hook on the base, registered before the in-place op, does, with the same values.
    """
    base = out._base
    if base is None or base.numel() != out.numel() or base.grad_fn is None:
        return out
    if any(base is a for a in args if isinstance(a, torch.Tensor)):
        return out  # a view of the module's own input: its base has other uses
    return base


def init_scale(params: Sequence[nn.Parameter], squares: Sequence[float]) -> float:
    """RMS of the first matrix-shaped parameter times sqrt(its fan-in), from its squared norm:
    about 0.58 at PyTorch's default init, 1.4 at He init; far below when small by design."""
    for param, square in zip(params, squares, strict=True):
        if param.dim() >= 2 and param.numel():
            return math.sqrt(square / param.numel() * math.prod(param.shape[1:]))
    return math.nan


_INDEXED = re.compile(r"^(\d+|.*[A-Za-z_](\d+))$")


def role_of(name: str) -> str:
    """The name with block indices replaced by '#': what the layer does, not where it sits.

    Any index-like part counts (`blocks.3`, `layer_3`, `block3`, `encoder_layer_11`, `h.0`,
    `fc7`): its digits become '#', so `encoder_layer_#` and `decoder_layer_#` stay apart. The
    layer's own last part is kept as it is when an earlier part is already an index: inside a
    repeated block it names a position (`blocks.#.mlp.0` and `blocks.#.mlp.3` are two different
    Linears, `layer#.#.conv1` and `layer#.#.conv2` two different convolutions), while in a plain
    stack (`features.7`, `fc7`) it is the depth index itself.
    """
    parts = name.split(".")
    indexed = [bool(_INDEXED.match(part)) for part in parts]
    out = []
    for i, part in enumerate(parts):
        keep = i == len(parts) - 1 and any(indexed[:i])
        out.append(part if keep or not indexed[i] else re.sub(r"\d+$", "#", part))
    return ".".join(out)


def _median(values: list[float]) -> float:
    finite = sorted(v for v in values if not math.isnan(v))
    if not finite:
        return math.nan
    mid = len(finite) // 2
    return finite[mid] if len(finite) % 2 else (finite[mid - 1] + finite[mid]) / 2
