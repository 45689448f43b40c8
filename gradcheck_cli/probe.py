"""GradientProbe: hooks that measure gradients per layer. It measures; it never judges or prints.

Output gradients are taken with tensor hooks on module outputs, registered from forward
hooks, not with register_full_backward_hook, which breaks on in-place activations
(pytorch/pytorch#61519). Every statistic is reduced on the device; each batch's scalars
are stacked into one tensor and brought to the host with a single .tolist().
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from gradcheck_cli.stats import ActivationStats, LayerStats, SourceRef

RELU_FAMILY = (nn.ReLU, nn.ReLU6)
SATURATING = {nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.Hardsigmoid: "sigmoid", nn.Hardtanh: "tanh"}
NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)
WEIGHT_TYPES = (
    nn.Linear,
    nn.modules.conv._ConvNd,
    nn.RNNBase,
    nn.RNNCellBase,
    nn.Embedding,
    nn.MultiheadAttention,
)
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
    ever_positive: torch.Tensor | None = None
    tail: torch.Tensor | None = None
    total: int = 0
    per_call: dict[int, torch.Tensor] = field(default_factory=dict)
    """ever_positive per call within one forward: one nn.ReLU is often reused on several widths."""
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
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if layer.order < 0:
                layer.order = len(self._order)
                self._order.append(layer)
            layer.calls += 1
            self._last_layer = layer.name
            out = first_tensor_out(output)
            if out is None or not out.requires_grad:
                return
            if not layer.width and out.dim() > 0:
                layer.width = out[0].numel() if out.dim() > 1 else 1
                if isinstance(module, nn.modules.conv._ConvNd):
                    layer.spatial = tuple(out.shape[2:])
            layer.act_numel += out.numel()
            out.register_hook(self._grad_hook(layer))

        return hook

    def _grad_hook(self, layer: _Layer) -> Callable[[torch.Tensor], None]:
        index = self._index[layer.name]

        def hook(grad: torch.Tensor) -> None:
            # vector_norm refuses dtype=float32 for a float64 grad ("narrowing"): take the norm, then cast
            wide = grad.dtype == torch.float64
            norm = (
                torch.linalg.vector_norm(grad).float()
                if wide
                else torch.linalg.vector_norm(grad, dtype=torch.float32)
            )
            self._act_sq.append(norm)
            self._act_owner.append(index)

        return hook

    def _activation_hook(self, act: _Activation) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if act.after is None:
                act.after = self._last_layer
            out = first_tensor_out(output)
            if out is None or out.dim() == 0:
                return
            if act.forward_seen != self._forwards:
                act.forward_seen, act.call = self._forwards, 0
            act.call += 1
            with torch.no_grad():
                self._activation_stats(act, out.detach())

        return hook

    @staticmethod
    def _activation_stats(act: _Activation, out: torch.Tensor) -> None:
        act.total += out.numel()
        if act.family == "relu":
            unit_dim = 1 if out.dim() >= 4 else out.dim() - 1
            reduce = [d for d in range(out.dim()) if d != unit_dim]
            positive = (out > 0).any(dim=reduce) if reduce else out > 0
            seen = act.per_call.get(act.call)
            act.per_call[act.call] = (
                positive if seen is None or seen.shape != positive.shape else seen | positive
            )
            return
        if act.family == "sigmoid":
            tail = ((out < SIGMOID_TAIL) | (out > 1 - SIGMOID_TAIL)).sum()
        else:
            tail = (out.abs() > TANH_TAIL).sum()
        act.tail = tail if act.tail is None else act.tail + tail

    # -- per-batch collection ------------------------------------------------------------
    def collect(self, unscale: float = 1.0) -> None:
        """After backward: reduce this batch's statistics on the device, one host transfer.

        `unscale` is the loss scale the backward ran under (float16 with a GradScaler):
        norms are divided by it, so the statistics describe the unscaled gradients.
        """
        grads: list[torch.Tensor] = []
        owner: list[int] = []
        has_grad = [0.0] * len(self.layers)
        for i, layer in enumerate(self.layers):
            for p in layer.params:
                if p.grad is not None:
                    grads.append(p.grad)
                    owner.append(i)
                    has_grad[i] = 1.0
        device = self._device()
        per_layer = torch.zeros(3, len(self.layers), device=device)
        if grads:
            index = torch.tensor(owner, device=device)
            norms = torch.stack([dense(n) for n in torch._foreach_norm(grads)]).float() / unscale
            zeros = torch.stack([dense((g == 0).sum()) for g in grads]).float()
            per_layer[0].index_add_(0, index, norms.square())
            per_layer[1].index_add_(0, index, zeros)
        if self._act_sq:
            index = torch.tensor(self._act_owner, device=device)
            per_layer[2].index_add_(0, index, (torch.stack(self._act_sq) / unscale).square())
        host = per_layer.tolist()
        for i, layer in enumerate(self.layers):
            numel = sum(p.numel() for p in layer.params if p.grad is not None)
            nonfinite = int(not math.isfinite(host[0][i])) + int(not math.isfinite(host[2][i]))
            layer.rows.append(
                [
                    host[2][i],
                    float(layer.act_numel),
                    host[0][i],
                    host[1][i],
                    float(numel),
                    float(nonfinite),
                    has_grad[i],
                ]
            )
            layer.act_numel = 0
        self._act_sq.clear()
        self._act_owner.clear()

    def _device(self) -> torch.device:
        for layer in self.layers:
            if layer.params:
                return layer.params[0].device
        return torch.device("cpu")

    # -- combining probes of several processes (torch.distributed) ------------------------------
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
        for act in self.activations:
            counts += [float(act.total), float(act.tail) if act.tail is not None else 0.0]
        summed = torch.tensor(counts, dtype=torch.float64)
        reduce_sum(summed)
        values = summed.tolist()
        self._forwards = int(values[0])
        for i, layer in enumerate(self.layers, start=1):
            layer.calls = int(values[i])
        for i, act in enumerate(self.activations):
            act.total, tail = int(values[1 + len(self.layers) + 2 * i]), values[2 + len(self.layers) + 2 * i]
            act.tail = torch.tensor(tail) if act.family != "relu" else None
            for call in sorted(act.per_call):  # every process ran the same calls, in the same order
                positive = act.per_call[call].to(torch.float64)
                reduce_sum(positive)
                act.per_call[call] = positive > 0

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
            norms = [dense(n) for n in torch._foreach_norm([p.detach() for p in params])]
            norms = torch.stack(norms).float().square().tolist()
        out: dict[str, float] = {}
        it = iter(norms)
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
        out = []
        for act in self.activations:
            units, dead, saturated = 0, 0.0, 0.0
            if act.per_call:
                act.ever_positive = torch.cat([p.flatten() for p in act.per_call.values()])
            if act.ever_positive is not None:
                units = act.ever_positive.numel()
                dead = 1.0 - float(act.ever_positive.float().mean())
            if act.tail is not None and act.total:
                saturated = float(act.tail) / act.total
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


def role_of(name: str) -> str:
    """The name with block indices replaced: blocks.3.mlp.fc1 -> blocks.#.mlp.fc1."""
    return ".".join("#" if part.isdigit() else part for part in name.split("."))


def kind_of(module: nn.Module) -> str:
    if isinstance(module, NORM_TYPES):
        return "norm"
    if isinstance(module, WEIGHT_TYPES):
        return "weight"
    return "other"


def has_normalization(model: nn.Module) -> bool:
    return any(isinstance(m, NORM_TYPES) for m in model.modules())


def _median(values: list[float]) -> float:
    finite = sorted(v for v in values if not math.isnan(v))
    if not finite:
        return math.nan
    mid = len(finite) // 2
    return finite[mid] if len(finite) % 2 else (finite[mid - 1] + finite[mid]) / 2
