"""The collect stage: the measured passes over the sample batches, and the ProbeResult they give
(per-layer statistics, activations, through-time curves, the origin of a NaN, the run's records).

It takes the frozen records of the stages before it (`Prepared`, `StageRecords`) and writes into
neither; more batches, when a statistic needs them, come from `prepared.source`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from gradcheck_cli.load.source import locate_modules
from gradcheck_cli.measure import distributed, observe, structure, through_time, zero_gains
from gradcheck_cli.measure.anomaly import NonfiniteOrigin, find_origin
from gradcheck_cli.measure.attention import measure_attention
from gradcheck_cli.measure.batch_source import batch_size_of
from gradcheck_cli.measure.batches import Batch, describe
from gradcheck_cli.measure.cell_gate_saturation import measure_cell_gates
from gradcheck_cli.measure.functional import FunctionalActivations
from gradcheck_cli.measure.inputs import describe_extra_args
from gradcheck_cli.measure.layer_kinds import has_normalization
from gradcheck_cli.measure.losses import LossChoice
from gradcheck_cli.measure.outputs import left_out_feeders
from gradcheck_cli.measure.passes import Prepared, StageRecords, counted, forward, loss_of
from gradcheck_cli.measure.probe import GradientProbe
from gradcheck_cli.records.stats import (
    ActivationStats,
    LayerStats,
    LeftOutOutputs,
    ModelInfo,
    ProbeResult,
    RunInfo,
    SourceRef,
)

NO_RECORDS = StageRecords()


@dataclass(frozen=True, slots=True)
class _Passes:
    """What the measured forward/backward passes over the batches saw."""

    layers: tuple[LayerStats, ...]
    activations: tuple[ActivationStats, ...]
    losses: list[float]
    loss: LossChoice | None
    left_out: LeftOutOutputs | None
    has_residual: bool | None
    attention_seen: bool | None = None
    """The first forward called F.scaled_dot_product_attention (None: no forward was watched)."""
    gates: tuple[tuple[str, torch.nn.Parameter], ...] | None = None
    """The zero-init candidates the first batch's graph multiplies by (`zero_gains.gating`)."""


def probe(prepared: Prepared, started: float, records: StageRecords = NO_RECORDS) -> ProbeResult:
    """Measure the prepared model on its batches; `records` (--weights, --steps, float16) go into
    the result as they are, and float16's loss scale scales the measured backward passes."""
    model = prepared.model
    sources = locate_modules(model)
    passes = _measured_passes(prepared, sources, records.loss_scale)
    activations = observe.top_up(
        model,
        passes.activations,
        prepared.batches,
        prepared.source.more,
        lambda batch: forward(prepared, batch),
        batch_size_of(prepared.batches[0]) or 0,
    )
    first = prepared.batches[0]
    layers, found_gains = zero_gains.measure(
        model,
        _backward_runner(prepared, first, records.loss_scale),
        passes.layers,
        prepared.config.seed,
        records.loss_scale,
        passes.gates,
    )
    recurrent = through_time.measure(model, lambda: forward(prepared, first), prepared.config.seed, sources)
    origin = _nonfinite_origin(prepared, layers)
    loss_values = distributed.gather_floats(passes.losses)
    return ProbeResult(
        model=_model_info(prepared),
        run=_run_info(prepared, passes.loss, time.perf_counter() - started),
        layers=layers,
        activations=activations,
        through_time=recurrent,
        has_normalization=has_normalization(model),
        loss_value=sum(loss_values) / len(loss_values) if loss_values else float("nan"),
        fp16_underflow=records.fp16_underflow,
        precision=records.precision,
        training=records.training,
        lr_headroom=records.lr_headroom,
        checkpoint=records.checkpoint,
        **_recomputed(model, lambda: forward(prepared, first), passes.attention_seen),
        nonfinite_op=origin.op if origin else None,
        nonfinite_source=origin.source if origin else None,
        left_out=passes.left_out,
        gates=found_gains,
        has_residual=passes.has_residual,
    )


def _measured_passes(prepared: Prepared, sources: dict[str, SourceRef], loss_scale: float) -> _Passes:
    """Forward, loss and backward on this rank's share of the batches, under the gradient probe
    (under torchrun each rank measures its share; the raw sums are combined across ranks)."""
    model, batches = prepared.model, prepared.batches
    losses: list[torch.Tensor] = []
    passes = _Passes((), (), [], None, None, None)
    mine = distributed.my_batches(len(batches))
    with GradientProbe(model, sources) as gradient_probe:
        functional_calls = FunctionalActivations(lambda: gradient_probe.last_layer)
        for index in counted(prepared, "measuring batch", mine, len(batches)):
            batch = batches[index]
            model.zero_grad(set_to_none=True)
            with functional_calls.watch():  # the model's forward only, not the loss
                output = forward(prepared, batch)
            choice = loss_of(prepared, batch, output, index)
            passes = _first_seen(passes, model, choice)
            (choice.value * loss_scale).backward()
            gradient_probe.collect(unscale=loss_scale)
            losses.append(choice.value.detach())
        distributed.combine_batches(gradient_probe, mine, len(batches))
        layers = gradient_probe.layer_stats()
        activations = gradient_probe.activation_stats() + functional_calls.stats()
    model.zero_grad(set_to_none=True)
    loss_values = torch.stack(losses).float().tolist() if losses else []
    seen = functional_calls.attention_seen()
    return dataclasses.replace(
        passes, layers=layers, activations=activations, losses=loss_values, attention_seen=seen
    )


def _first_seen(passes: _Passes, model: torch.nn.Module, choice: LossChoice) -> _Passes:
    """The loss of this batch; the skip connection and the left-out outputs as first found."""
    residual = passes.has_residual
    if residual is None:
        residual = structure.has_residual_add(choice.value)
    left_out = passes.left_out or left_out_feeders(model, choice.value, choice.left_out)
    gates = passes.gates if passes.gates is not None else tuple(zero_gains.gating(choice.value, model))
    return dataclasses.replace(passes, loss=choice, left_out=left_out, has_residual=residual, gates=gates)


def _recomputed(
    model: torch.nn.Module, run_forward: Callable[[], object], attention_seen: bool | None = None
) -> dict[str, Any]:
    """LSTM/GRU cell gate saturation and attention probabilities, recomputed from one forward's
    inputs; the attention forward only where there is attention (an nn.MultiheadAttention, or a
    scaled_dot_product_attention call the measured forward made, or no forward was watched)."""
    mha = any(isinstance(m, torch.nn.MultiheadAttention) for m in model.modules())
    attention = measure_attention(model, run_forward) if mha or attention_seen is not False else ()
    return {"gate_saturation": measure_cell_gates(model, run_forward), "attention": attention}


def _nonfinite_origin(prepared: Prepared, layers: tuple[LayerStats, ...]) -> NonfiniteOrigin | None:
    """Only when the probe saw NaN/inf: re-run one batch under anomaly detection to name the op."""
    if not any(layer.nonfinite for layer in layers):
        return None
    origin = None
    for index, batch in enumerate(prepared.batches):
        origin = find_origin(_loss_runner(prepared, batch, index))
        if origin is not None:
            break
    prepared.model.zero_grad(set_to_none=True)
    return origin


def _backward_runner(prepared: Prepared, batch: Batch, loss_scale: float) -> Callable[[], None]:
    def run() -> None:
        loss = loss_of(prepared, batch, forward(prepared, batch), 0).value
        (loss * loss_scale).backward()

    return run


def _loss_runner(prepared: Prepared, batch: Batch, index: int) -> Callable[[], torch.Tensor]:
    return lambda: loss_of(prepared, batch, forward(prepared, batch), index).value


def _batch_shapes(batches: tuple[Batch, ...]) -> tuple[str, ...]:
    """What a hook or the caller handed over, as the header shows it: ('float32[32x784]',)."""
    if not batches:
        return ()
    first = batches[0]
    return tuple(describe(a) for a in first.args) + tuple(
        f"{k}={describe(v)}" for k, v in first.kwargs.items()
    )


def _model_info(prepared: Prepared) -> ModelInfo:
    model, loaded = prepared.model, prepared.loaded
    params = {id(p): p for p in model.parameters()}.values()
    return ModelInfo(
        class_name=type(model).__name__,
        parameters=sum(p.numel() for p in params),
        trainable=sum(p.numel() for p in params if p.requires_grad),
        device=prepared.device,
        dtype=prepared.config.dtype,
        dtype_reason=prepared.config.dtype_reason,
        found_by=loaded.found_by,
        init_args=dict(loaded.init_args),
        source=loaded.source,
    )


def _run_info(prepared: Prepared, loss: LossChoice | None, seconds: float) -> RunInfo:
    config, plan = prepared.config, prepared.plan
    inputs = tuple(str(s) for s in plan.specs) or _batch_shapes(prepared.batches)
    inputs += describe_extra_args(plan)
    if config.target_arg:
        inputs += (f"{config.target_arg}=<targets>",)
    return RunInfo(
        batches=len(prepared.batches),
        steps=config.steps,
        seed=config.seed,
        loss=loss.name if loss else config.loss,
        loss_reason=loss.reason if loss else "",
        inputs=inputs,
        seconds=seconds,
        input_origin=plan.origin,
    )
