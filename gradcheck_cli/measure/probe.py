"""GradientProbe: hooks that measure gradients per layer. It measures; it never judges or prints.

Output gradients are taken with tensor hooks on module outputs, registered from forward
hooks, not with register_full_backward_hook, which breaks on in-place activations
(pytorch/pytorch#61519). Every statistic is reduced on the device; each batch's scalars
are stacked into one tensor and brought to the host with a single .tolist().

Cost rules (benchmarks/overhead.py measures them): hooks do one reduction each and keep no
tensor but scalars; parameter gradients are reduced with foreach norms and count_nonzero
(a bool `g == 0` then `.sum()` costs 4x more on CPU); weight norms are taken once per run.

This module is the hook lifecycle and the gradient hooks; activation statistics are
`activations`, parameter-gradient reductions `grads`, and the arithmetic from raw sums to
LayerStats `aggregate` (torch-free).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from gradcheck_cli.measure import measurements
from gradcheck_cli.measure.activations import (
    ModuleActivation,
    family_of,
    first_tensor_out,
    is_hard,
    watch,
)
from gradcheck_cli.measure.aggregate import BatchSums, LayerRecord, layer_stats
from gradcheck_cli.measure.grads import ParameterGrads, hook_target, to_host, weight_norms
from gradcheck_cli.measure.layer_kinds import feature_dim, is_conv, kind_of
from gradcheck_cli.records.measures import Measures
from gradcheck_cli.records.stats import ActivationStats, LayerStats, SourceRef

__all__ = ["GradientProbe", "ParameterGrads"]


def direct_params(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return list(module.named_parameters(recurse=False))


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
    rows: list[BatchSums] = field(default_factory=list)
    """Per batch, the raw sums."""
    measured: list[dict[str, float]] = field(default_factory=list)
    """Per batch, the registered measurements' values (measure/measurements.py)."""

    def record(self, source: SourceRef | None, scale: float = math.nan) -> LayerRecord:
        return LayerRecord(
            name=self.name,
            type=type(self.module).__name__,
            parameters=sum(p.numel() for p in self.params),
            trainable=any(p.requires_grad for p in self.params),
            shared_with=self.shared_with,
            owns_parameters=bool(self.params),
            calls=self.calls,
            hooked=self.order >= 0,
            width=self.width,
            spatial=self.spatial,
            kind=kind_of(self.module),
            source=source,
            features=self.features,
            init_scale=scale,
        )


class GradientProbe:
    """`with GradientProbe(model) as probe:` run forward/backward, call `probe.collect()` per batch."""

    def __init__(self, model: nn.Module, sources: dict[str, SourceRef] | None = None) -> None:
        self.model = model
        self.sources = sources or {}
        self.layers: list[_Layer] = []
        self.activations: list[ModuleActivation] = []
        self._handles: list[RemovableHandle] = []
        self._order: list[_Layer] = []
        self._last_layer: str | None = None
        self._was_training = model.training
        self._restore_mode = True
        self.forwards = 0
        """Forward passes of the whole model seen while attached."""
        self._act_sq: list[torch.Tensor] = []
        self._act_owner: list[int] = []
        self._index: dict[str, int] = {}

    @property
    def last_layer(self) -> str | None:
        """The parameter-owning module that ran last (functional activations are attributed to it)."""
        return self._last_layer

    # -- set-up and tear-down ------------------------------------------------------------
    def __enter__(self) -> GradientProbe:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def attach(self, train: bool = True) -> GradientProbe:
        """Register the hooks; `train` puts the model in train mode (detach() restores it).

        A training-loop monitor attaches with train=False: the user's modes stand."""
        owners: dict[int, str] = {}
        try:
            for name, module in self.model.named_modules():
                self._attach(name or type(module).__name__, module, owners)
            self._handles.append(self.model.register_forward_pre_hook(self._on_model_forward))
        except BaseException:
            self._remove()
            raise
        self._was_training = self.model.training
        self._restore_mode = train
        if train:
            self.model.train()
        return self

    def detach(self) -> None:
        """Remove every hook; restore the model's mode if attach() changed it."""
        self._remove()
        if self._restore_mode:
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
        family = family_of(module)
        if family:
            act = ModuleActivation(name=name, module=module, family=family, hard=is_hard(module))
            self.activations.append(act)
            self._handles.append(watch(act, lambda: self._last_layer, lambda: self.forwards))

    # -- hooks ------------------------------------------------------------------------------
    def _on_model_forward(self, module: nn.Module, args: Any) -> None:
        self.forwards += 1

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

    def reset(self) -> None:
        """Forget what was measured, keep the hooks: the next batches start a fresh measurement.

        A training-loop monitor measuring every step re-uses one attached probe this way;
        attaching hooks to every module again would cost more than the step itself.
        """
        self.forwards = 0
        self._act_sq.clear()
        self._act_owner.clear()
        for layer in self.layers:
            layer.rows.clear()
            layer.measured.clear()
            layer.calls = layer.act_numel = 0
        for act in self.activations:
            act.reset()

    # -- per-batch collection ------------------------------------------------------------
    def collect(self, unscale: float = 1.0) -> None:
        """After backward: reduce this batch's statistics on the device, one host transfer.

        `unscale` is the loss scale the backward ran under (float16 with a GradScaler):
        norms are divided by it, so the statistics describe the unscaled gradients.
        """
        grads = ParameterGrads.gather([layer.params for layer in self.layers])
        extra, owners = measurements.device_values([(layer.module, layer.params) for layer in self.layers])
        host = measurements.land(owners, to_host(*grads.device_scalars(), self._act_sq, extra), self.layers)
        act_count = len(self._act_sq)
        grads.widen_overflowed(host)
        grad_sq, zeros = grads.per_group(host[: len(host) - act_count], len(self.layers), unscale)
        act_sq = [0.0] * len(self.layers)
        for owner, norm in zip(self._act_owner, host[len(host) - act_count :], strict=True):
            act_sq[owner] += (norm / unscale) ** 2  # squared on the host in double: no float32 overflow
        fired = set(self._act_owner)
        for i, layer in enumerate(self.layers):
            # A float32 norm of finite values above ~1e19 overflows: the parameter gradients are
            # widened then (exact); an output-gradient norm counts only where there are none.
            act_bad = not math.isfinite(act_sq[i]) and not grads.has_grad[i]
            nonfinite = int(not math.isfinite(grad_sq[i])) + int(act_bad)
            # A hook that never fired while the parameters got a gradient is a miss, not a 0.
            missed = layer.hooks_set > 0 and i not in fired and grad_sq[i] > 0
            layer.rows.append(
                BatchSums(
                    act_sq=act_sq[i],
                    act_numel=float(layer.act_numel),
                    grad_sq=grad_sq[i],
                    zero_count=zeros[i],
                    grad_numel=float(grads.numel[i]),
                    nonfinite=float(nonfinite),
                    has_grad=float(grads.has_grad[i]),
                    missed=float(missed),
                )
            )
            layer.act_numel = layer.hooks_set = 0
        self._act_sq.clear()
        self._act_owner.clear()

    # -- results ------------------------------------------------------------------------------
    def layer_stats(self) -> tuple[LayerStats, ...]:
        """Per-layer statistics, in forward execution order (never-called layers last)."""
        weights = self._weight_norms()
        ordered = sorted(self.layers, key=lambda layer: (layer.order < 0, layer.order))
        return tuple(
            layer_stats(
                layer.record(self.sources.get(layer.name), weights[layer.name][1]),
                layer.rows,
                i,
                weights[layer.name][0],
                self.forwards,
                Measures(measurements.combined(layer.measured)),
            )
            for i, layer in enumerate(ordered)
        )

    def _weight_norms(self) -> dict[str, tuple[float, float]]:
        """Per layer, its parameters' L2 norm and its init_scale, from one host transfer."""
        norms = weight_norms([layer.params for layer in self.layers])
        return {layer.name: norm for layer, norm in zip(self.layers, norms, strict=True)}

    def activation_stats(self) -> tuple[ActivationStats, ...]:
        # One host transfer for all activations: per activation, dead units or tail count,
        # units fed a constant, and the centred norms for the mean derivative.
        measured = [act.counts() for act in self.activations]
        host = to_host(*([m[k] for m in measured] for k in range(3)))
        n = len(self.activations)
        return tuple(
            act.stats(host[i], self.sources.get(act.name), host[n + i], host[2 * n + i])
            for i, act in enumerate(self.activations)
        )
