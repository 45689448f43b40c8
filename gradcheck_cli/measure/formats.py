"""--precision bf16,fp16,fp8-e4m3,fp8-e5m2: each layer's headroom in each number format.

One float32 reference pass on the first batch (float64 under --dtype float64, never autocast):
- forward hooks on every layer with parameters count where its outputs fall against each format's
  limits (measure/format_counts.py) and run the layer again in each format, on the same inputs
  (its weights and inputs cast, under no_grad), comparing that output with the float32 one;
- tensor hooks on the outputs count the gradients arriving there, the parameter gradients are
  counted after the backward;
- from all gradients, each format's loss-scale range (judge/format_verdict.py), then a second
  backward over the retained graph rounds every output gradient through the format, unscaled and at
  the suggested scale, and the parameter gradients likewise, against their float32 values.
The model's buffers (BatchNorm running statistics) are restored and no gradient is left behind.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gradcheck_cli.judge.format_verdict import (
    GradientRange,
    LayerErrors,
    cause,
    loss_scale,
    power_of,
    verdict,
)
from gradcheck_cli.measure.activations import first_tensor_out
from gradcheck_cli.measure.format_counts import (
    Counts,
    ErrorSums,
    HostCounts,
    float_tensors,
    method_text,
    relative_error,
    rounded,
    run_in_format,
    tensor_scale,
    to_host,
)
from gradcheck_cli.measure.grads import hook_target
from gradcheck_cli.measure.passes import Prepared, forward, loss_of
from gradcheck_cli.measure.probe import direct_params
from gradcheck_cli.records.precision import (
    FINE,
    SMALL_QUANTILE,
    FormatHeadroom,
    FormatLayer,
    LossScale,
    NumberFormat,
    PrecisionHeadroom,
    number_format,
)


@dataclass(slots=True)
class _Layer:
    name: str
    module: nn.Module
    params: list[nn.Parameter]
    act: Counts
    grad: Counts
    wgrad: Counts
    forward_error: list[ErrorSums]
    grad_error: list[ErrorSums]
    """Per format: gradients rounded unscaled."""
    grad_error_scaled: list[ErrorSums]
    fallback: set[str] = field(default_factory=set)
    """Formats this layer could not run in natively here (rounded instead)."""


class _Session:
    """The hooks of the reference pass and what they measured, per layer and format."""

    def __init__(self, model: nn.Module, formats: list[NumberFormat]) -> None:
        self.formats = formats
        maxima = [f.max for f in formats]
        self.layers: list[_Layer] = []
        owners: set[int] = set()
        for name, module in model.named_modules():
            params = [p for _, p in direct_params(module) if p.requires_grad and id(p) not in owners]
            owners.update(id(p) for p in params)
            if params:
                self.layers.append(self._layer(name or type(module).__name__, module, params, maxima))
        self.confirming = False
        self.scales: list[float] | None = None
        """Set between the two backward passes: the suggested loss scale of each format."""

    def _layer(self, name: str, module: nn.Module, params: list[nn.Parameter], maxima: list[float]) -> _Layer:
        def sums() -> list[ErrorSums]:
            return [ErrorSums() for _ in self.formats]

        counts = (Counts(maxima), Counts(maxima), Counts(maxima))
        return _Layer(name, module, params, *counts, sums(), sums(), sums())

    @contextmanager
    def hooks(self) -> Iterator[None]:
        handles = [
            layer.module.register_forward_hook(self._forward_hook(layer), with_kwargs=True)
            for layer in self.layers
        ]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _forward_hook(self, layer: _Layer) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
            if self.confirming:
                return  # the layer's own run in a format
            for out in float_tensors(output):
                layer.act.add(out)
            reference = first_tensor_out(output)
            if reference is None or not reference.is_floating_point():
                return
            self._confirm(layer, args, kwargs, reference.detach())
            if reference.requires_grad:
                hook_target(reference, args).register_hook(self._grad_hook(layer))

        return hook

    def _confirm(self, layer: _Layer, args: Any, kwargs: Any, reference: torch.Tensor) -> None:
        self.confirming = True
        try:
            for fmt, sums in zip(self.formats, layer.forward_error, strict=True):
                native = fmt.native_on_cpu and fmt.name not in layer.fallback
                try:
                    low = run_in_format(layer.module, fmt, args, kwargs, native)
                except (RuntimeError, NotImplementedError):
                    if not native:
                        raise
                    layer.fallback.add(fmt.name)  # no kernel for this dtype here: round instead
                    low = run_in_format(layer.module, fmt, args, kwargs, False)
                if low is not None and low.shape == reference.shape:
                    sums.add(low.to(reference.dtype), reference)
        finally:
            self.confirming = False

    def _grad_hook(self, layer: _Layer) -> Callable[[torch.Tensor], None]:
        def hook(grad: torch.Tensor | None) -> None:
            if grad is None:
                return
            if self.scales is None:
                layer.grad.add(grad)
                return
            self._round_grad(grad.detach(), layer.grad_error, layer.grad_error_scaled)

        return hook

    def _round_grad(self, grad: torch.Tensor, unscaled: list[ErrorSums], scaled: list[ErrorSums]) -> None:
        assert self.scales is not None
        for fmt, scale, plain, lifted in zip(self.formats, self.scales, unscaled, scaled, strict=True):
            plain.add(rounded(grad, fmt), grad)
            lifted.add(rounded(grad, fmt, tensor_scale(grad, fmt) if fmt.tensor_scaled else scale), grad)

    def count_weight_grads(self) -> None:
        for layer in self.layers:
            for p in layer.params:
                if p.grad is not None:
                    layer.wgrad.add(p.grad)

    def round_weight_grads(self) -> None:
        for layer in self.layers:
            for p in layer.params:
                if p.grad is not None:
                    self._round_grad(p.grad.detach(), layer.grad_error, layer.grad_error_scaled)


def measure_formats(prepared: Prepared, names: tuple[str, ...]) -> PrecisionHeadroom:
    """Every layer's headroom in each named format, from one reference pass on the first batch."""
    formats = [number_format(name) for name in names]
    model, batch = prepared.model, prepared.batches[0]
    dtype = "float64" if prepared.config.dtype == "float64" else "float32"
    session = _Session(model, formats)
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    try:
        with session.hooks():
            torch.manual_seed(prepared.config.seed)
            model.zero_grad(set_to_none=True)
            loss = loss_of(prepared, batch, forward(prepared, batch, dtype), 0).value
            loss.backward(retain_graph=True)
            session.count_weight_grads()
            counts = _host_counts(session)
            scales = [loss_scale(_range(counts, fmt, i), fmt) for i, fmt in enumerate(formats)]
            session.scales = [s.suggested for s in scales]
            session.round_weight_grads()
            model.zero_grad(set_to_none=True)
            loss.backward()
    finally:
        model.zero_grad(set_to_none=True)
        with torch.no_grad():
            for name, b in model.named_buffers():
                if name in buffers:
                    b.copy_(buffers[name])
    return _headroom(session, counts, scales)


def _host_counts(session: _Session) -> list[tuple[HostCounts, HostCounts, HostCounts]]:
    """Per layer (activations, output gradients, parameter gradients), in one transfer."""
    flat = to_host([c for layer in session.layers for c in (layer.act, layer.grad, layer.wgrad)])
    return [(flat[i], flat[i + 1], flat[i + 2]) for i in range(0, len(flat), 3)]


def _range(
    counts: list[tuple[HostCounts, HostCounts, HostCounts]], fmt: NumberFormat, index: int
) -> GradientRange:
    grads = [g for _, grad, wgrad in counts for g in (grad, wgrad)]
    hist = tuple(map(sum, zip(*(g.hist for g in grads), strict=True))) if grads else (0,)
    merged = HostCounts(hist=hist, over=(), peak=max((g.peak for g in grads), default=0.0))
    return GradientRange(
        nonzero=merged.nonzero,
        peak=merged.peak,
        small_power=merged.quantile_power(SMALL_QUANTILE),
        underflow=merged.below(power_of(fmt.min_normal)),
        overflow=sum(g.over[index] for g in grads if g.over),
    )


def _share(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def _headroom(session: _Session, counts: list[Any], scales: list[LossScale]) -> PrecisionHeadroom:
    formats = []
    for index, (fmt, scale) in enumerate(zip(session.formats, scales, strict=True)):
        layers = tuple(
            _layer(layer, c, fmt, index, scale) for layer, c in zip(session.layers, counts, strict=True)
        )
        fallback = sorted(layer.name for layer in session.layers if fmt.name in layer.fallback)
        formats.append(
            FormatHeadroom(format=fmt.name, method=method_text(fmt, fallback), tolerance=fmt.tolerance,
                           layers=layers, loss_scale=scale)
        )  # fmt: skip
    elements = sum(h.nonzero + h.hist[0] for triple in counts for h in triple)
    return PrecisionHeadroom(formats=tuple(formats), elements=elements)


def _lift(counts: HostCounts, fmt: NumberFormat, scale: LossScale) -> int:
    """log2 of the scale the gradients are stored at: fp8's per-tensor scale, else the loss scale
    (power_of(1) = 0). A layer's parameter gradients share one scale here (their largest value)."""
    if fmt.tensor_scaled:
        return math.floor(math.log2(fmt.max / counts.peak)) if counts.peak > 0 else 0
    return power_of(scale.suggested) if scale.suggested > 0 else 0


def _layer(layer: _Layer, counts: tuple[HostCounts, HostCounts, HostCounts], fmt: NumberFormat,
           index: int, scale: LossScale) -> FormatLayer:  # fmt: skip
    act, grad, wgrad = counts
    normal, zero = power_of(fmt.min_normal), power_of(fmt.min_subnormal) - 1
    grads = grad.nonzero + wgrad.nonzero
    lift = [_lift(c, fmt, scale) for c in (grad, wgrad)]
    confirmed, nonfinite = relative_error(layer.forward_error[index])
    under, over = (
        _share(act.below(normal), act.nonzero),
        _share(act.over[index] if act.over else 0, act.nonzero),
    )
    # the verdict's cause, fp8: the output at its own scale (it cannot overflow; what is small is
    # small against the largest output)
    scaled_under = _share(act.below(normal - _lift(act, fmt, scale)), act.nonzero)
    errors = LayerErrors(
        activation_overflow=0.0 if fmt.tensor_scaled else over,
        activation_underflow=scaled_under if fmt.tensor_scaled else under,
        confirmed_error=confirmed,
        confirmed_nonfinite=nonfinite,
        grad_overflow=_share(sum(c.over[index] for c in (grad, wgrad) if c.over), grads),
        grad_error=relative_error(layer.grad_error[index])[0],
        grad_error_scaled=relative_error(layer.grad_error_scaled[index])[0],
        grad_to_zero=_share(grad.below(zero) + wgrad.below(zero), grads),
        grad_to_zero_scaled=_share(grad.below(zero - lift[0]) + wgrad.below(zero - lift[1]), grads),
    )
    kind, reason = verdict(errors, fmt, scale.suggested)
    return FormatLayer(
        name=layer.name,
        activation_underflow=under,
        activation_overflow=over,
        grad_underflow=_share(grad.below(normal), grad.nonzero),
        grad_overflow=_share(grad.over[index] if grad.over else 0, grad.nonzero),
        weight_grad_underflow=_share(wgrad.below(normal), wgrad.nonzero),
        weight_grad_overflow=_share(wgrad.over[index] if wgrad.over else 0, wgrad.nonzero),
        activation_to_zero=_share(act.below(zero), act.nonzero),
        grad_to_zero=errors.grad_to_zero,
        confirmed_error=confirmed,
        confirmed_nonfinite=nonfinite,
        grad_error=errors.grad_error,
        grad_error_scaled=errors.grad_error_scaled,
        verdict=kind,
        reason=reason,
        cause="" if kind == FINE else cause(errors, fmt),
    )
