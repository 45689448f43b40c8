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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from gradcheck_cli.compat import foreach_norm
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
    unit_dim = 1 if ndim >= 4 else ndim - 1
    reduce = [d for d in range(ndim) if d != unit_dim]
    return out.amax(dim=reduce) if reduce else out


def tail_count(out: torch.Tensor, family: str) -> torch.Tensor:
    """Elements of a sigmoid/tanh output in a flat tail (derivative under 5% of its maximum)."""
    if family == "sigmoid":
        return (out - 0.5).abs_().gt_(0.5 - SIGMOID_TAIL).sum()
    return out.abs().gt_(TANH_TAIL).sum()


def direct_params(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return list(module.named_parameters(recurse=False))


# The columns of one batch's raw sums per layer (_Layer.rows, batch_sums()).
ROW_FIELDS = ("act_sq", "act_numel", "grad_sq", "zero_count", "grad_numel", "nonfinite", "has_grad")


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
    act_numel: int = 0
    rows: list[list[float]] = field(default_factory=list)
    """Per batch: [act_sq, act_numel, grad_sq, zero_count, grad_numel, nonfinite, has_grad]."""


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
            act = _Activation(name=name, module=module, family=family)
            self.activations.append(act)
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
            out.register_hook(grad_hook)

        return hook

    @staticmethod
    def _record_shape(layer: _Layer, module: nn.Module, out: torch.Tensor) -> None:
        layer.width = out[0].numel() if out.dim() > 1 else 1
        if is_conv(module):
            layer.spatial = tuple(out.shape[2:])

    def _grad_hook(self, layer: _Layer) -> Callable[[torch.Tensor], None]:
        index = self._index[layer.name]
        norms, owners = self._act_sq, self._act_owner  # cleared in place by collect(), never rebound

        def hook(grad: torch.Tensor) -> None:
            # vector_norm refuses dtype=float32 for a float64 grad ("narrowing"): keep float64 there
            if grad.dtype == torch.float64:
                norms.append(torch.linalg.vector_norm(grad))
            else:
                norms.append(torch.linalg.vector_norm(grad, dtype=torch.float32))
            owners.append(index)

        return hook

    def _activation_hook(self, act: _Activation) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if act.after is None:
                act.after = self._last_layer
            out = output if type(output) is torch.Tensor else first_tensor_out(output)
            if out is None or out.dim() == 0:
                return
            if act.forward_seen != self._forwards:
                act.forward_seen, act.call = self._forwards, 0
            act.call += 1
            # detach() is enough to keep these reductions off the graph; a no_grad() block
            # would cost half as much again as the reductions themselves on small outputs.
            self._activation_stats(act, out.detach())

        return hook

    @staticmethod
    def _activation_stats(act: _Activation, out: torch.Tensor) -> None:
        act.total += out.numel()
        if act.family == "relu":
            peak = unit_peaks(out)
            seen = act.peaks.get(act.call)
            same = seen is not None and seen.shape == peak.shape
            act.peaks[act.call] = torch.maximum(seen, peak) if same else peak  # type: ignore[arg-type]
            return
        act.tails.append(tail_count(out, act.family))

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
        for i, layer in enumerate(self.layers):
            nonfinite = int(not math.isfinite(grad_sq[i])) + int(not math.isfinite(act_sq[i]))
            row = [act_sq[i], float(layer.act_numel), grad_sq[i], zeros[i], float(grads.numel[i])]
            layer.rows.append([*row, float(nonfinite), float(grads.has_grad[i])])
            layer.act_numel = 0
        self._act_sq.clear()
        self._act_owner.clear()

    # -- combining processes (torch.distributed) ----------------------------------------------
    def batch_sums(self) -> torch.Tensor:
        """float64 [batches, layers, len(ROW_FIELDS)]: each collected batch's raw sums, layers in attach order."""
        rows = [layer.rows for layer in self.layers]
        batches = len(rows[0]) if rows else 0
        sums = torch.tensor(rows, dtype=torch.float64) if batches else torch.zeros(len(self.layers), 0, 7)
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
        tails = _to_host(
            [
                self._unit_count(act) if act.tails else torch.zeros((), dtype=torch.int64)
                for act in self.activations
            ]
        )
        for act, tail in zip(self.activations, tails, strict=True):
            counts += [float(act.total), tail]
        summed = torch.tensor(counts, dtype=torch.float64)
        reduce_sum(summed)
        values = summed.tolist()
        self._forwards = int(values[0])
        for i, layer in enumerate(self.layers, start=1):
            layer.calls = int(values[i])
        for i, act in enumerate(self.activations):
            act.total, tail = int(values[1 + len(self.layers) + 2 * i]), values[2 + len(self.layers) + 2 * i]
            act.tails = [torch.tensor(tail)] if act.family != "relu" else []
            for call in sorted(act.peaks):  # every process ran the same calls, in the same order
                alive = (act.peaks[call] > 0).to(torch.float64)
                reduce_sum(alive)
                act.peaks[call] = alive  # > 0 where any process saw the unit positive

    # -- results ------------------------------------------------------------------------------
    def layer_stats(self) -> tuple[LayerStats, ...]:
        """Per-layer statistics, in forward execution order (never-called layers last)."""
        weights = self._weight_norms()
        ordered = sorted(self.layers, key=lambda layer: (layer.order < 0, layer.order))
        forwards = max(1, self._forwards)
        return tuple(self._stats(layer, i, weights[layer.name], forwards) for i, layer in enumerate(ordered))

    def _weight_norms(self) -> dict[str, float]:
        params = [p for layer in self.layers for p in layer.params]
        if not params:
            return {}
        with torch.no_grad():
            stacked = torch.stack([dense(n).double() for n in foreach_norm([p.detach() for p in params])])
            squares: list[float] = stacked.square().tolist()
        out: dict[str, float] = {}
        it = iter(squares)
        for layer in self.layers:
            out[layer.name] = math.sqrt(sum(next(it) for _ in layer.params))
        return out

    def _stats(self, layer: _Layer, index: int, weight_norm: float, forwards: int) -> LayerStats:
        rows = layer.rows or [[math.nan, 0.0, math.nan, 0.0, 0.0, 0.0, 0.0]]
        act_norms = [math.sqrt(r[0]) if r[1] else math.nan for r in rows]
        act_rms = [math.sqrt(r[0] / r[1]) if r[1] else math.nan for r in rows]
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
            batch_act_grad_norm=tuple(act_norms),
            source=self.sources.get(layer.name),
        )

    def activation_stats(self) -> tuple[ActivationStats, ...]:
        # One host transfer for all activations: per activation, dead units and tail count.
        counts = _to_host([self._unit_count(act) for act in self.activations])
        out = []
        for act, count in zip(self.activations, counts, strict=True):
            units, dead, saturated = 0, 0.0, 0.0
            if act.peaks:
                units = sum(peak.numel() for peak in act.peaks.values())
                dead = count / units if units else 0.0
            elif act.tails and act.total:
                saturated = count / act.total
            out.append(
                ActivationStats(
                    name=act.name,
                    type=type(act.module).__name__,
                    family=act.family,
                    after=act.after,
                    units=units,
                    dead_fraction=dead,
                    saturated_fraction=saturated,
                    source=self.sources.get(act.name),
                )
            )
        return tuple(out)

    @staticmethod
    def _unit_count(act: _Activation) -> torch.Tensor:
        """Dead units (ReLU family) or elements in a flat tail (saturating family), on the device."""
        if act.peaks:
            # NaN is not <= 0: a unit that produced NaN is not dead
            return torch.stack([(peak <= 0).sum() for peak in act.peaks.values()]).sum()
        if act.tails:
            return torch.stack(act.tails).sum()
        return torch.zeros((), dtype=torch.int64)


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


def role_of(name: str) -> str:
    """The name with block indices replaced: blocks.3.mlp.fc1 -> blocks.#.mlp.fc1."""
    return ".".join("#" if part.isdigit() else part for part in name.split("."))


def _median(values: list[float]) -> float:
    finite = sorted(v for v in values if not math.isnan(v))
    if not finite:
        return math.nan
    mid = len(finite) // 2
    return finite[mid] if len(finite) % 2 else (finite[mid - 1] + finite[mid]) / 2
