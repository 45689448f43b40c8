"""The collect stage: the measured passes over the sample batches, and the ProbeResult they give
(per-layer statistics, activations, through-time curves, the origin of a NaN, the run's records).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from gradcheck_cli.load.source import locate_modules
from gradcheck_cli.measure import distributed, observe, structure, through_time
from gradcheck_cli.measure import zero_gains as zero_gates
from gradcheck_cli.measure.anomaly import NonfiniteOrigin, find_origin
from gradcheck_cli.measure.attention import measure_attention
from gradcheck_cli.measure.cell_gate_saturation import measure_gates
from gradcheck_cli.measure.functional import FunctionalActivations
from gradcheck_cli.measure.inputs import Batch, describe, describe_extra_args
from gradcheck_cli.measure.layer_kinds import has_normalization
from gradcheck_cli.measure.outputs import left_out_feeders
from gradcheck_cli.measure.preparation import more_batches
from gradcheck_cli.measure.probe import GradientProbe
from gradcheck_cli.measure.session import Session, counted, forward, loss_of
from gradcheck_cli.records.stats import LayerStats, LeftOutOutputs, ModelInfo, ProbeResult, RunInfo


def probe(session: Session, started: float) -> ProbeResult:
    model = session.loaded.module
    sources = locate_modules(model)
    losses: list[float] = []
    left_out: LeftOutOutputs | None = None
    # Under torchrun each rank measures its share of the batches; the raw sums are combined below.
    mine = distributed.my_batches(len(session.batches))
    residual: bool | None = None
    with GradientProbe(model, sources) as gradient_probe:
        functional_calls = FunctionalActivations(lambda: gradient_probe.last_layer)
        for index in counted(session, "measuring batch", mine, len(session.batches)):
            batch = session.batches[index]
            model.zero_grad(set_to_none=True)
            with functional_calls.watch():  # the model's forward only, not the loss
                output = forward(session, batch)
            choice = loss_of(session, batch, output, index)
            if residual is None:
                residual = structure.has_residual_add(choice.value)
            left_out = left_out or left_out_feeders(model, choice.value, choice.left_out)
            (choice.value * session.loss_scale).backward()
            gradient_probe.collect(unscale=session.loss_scale)
            losses.append(choice.value.detach())  # type: ignore[arg-type]
            session.loss = choice
        distributed.combine_batches(gradient_probe, mine, len(session.batches))
        layers = gradient_probe.layer_stats()
        activations = gradient_probe.activation_stats() + functional_calls.stats()
    model.zero_grad(set_to_none=True)
    activations, session.extra_samples = observe.top_up(
        model,
        activations,
        session.batches,
        lambda count: more_batches(session, count),
        lambda batch: forward(session, batch),
        _batch_size(session.batches[0]),
    )
    first = session.batches[0]
    layers, found_gates = zero_gates.measure(
        model, _backward_runner(session, first), layers, session.config.seed, session.loss_scale
    )
    recurrent = through_time.measure(model, lambda: forward(session, first), session.config.seed, sources)
    origin = _nonfinite_origin(session, layers)
    loss_values = torch.stack(losses).float().tolist() if losses else []  # type: ignore[arg-type]
    loss_values = distributed.gather_floats(loss_values)
    return ProbeResult(
        model=_model_info(session),
        run=_run_info(session, time.perf_counter() - started),
        layers=layers,
        activations=activations,
        through_time=recurrent,
        has_normalization=has_normalization(model),
        loss_value=sum(loss_values) / len(loss_values) if loss_values else float("nan"),
        fp16_underflow=session.fp16_underflow,
        training=session.training,
        checkpoint=session.checkpoint,
        **_recomputed(model, lambda: forward(session, first)),
        nonfinite_op=origin.op if origin else None,
        nonfinite_source=origin.source if origin else None,
        left_out=left_out,
        gates=found_gates,
        has_residual=residual,
    )


def _recomputed(model: torch.nn.Module, run_forward: Callable[[], object]) -> dict[str, Any]:
    """LSTM/GRU gate saturation and attention probabilities, recomputed from one forward's inputs."""
    return {
        "gate_saturation": measure_gates(model, run_forward),
        "attention": measure_attention(model, run_forward),
    }


def _nonfinite_origin(session: Session, layers: tuple[LayerStats, ...]) -> NonfiniteOrigin | None:
    """Only when the probe saw NaN/inf: re-run one batch under anomaly detection to name the op."""
    if not any(layer.nonfinite for layer in layers):
        return None
    origin = None
    for index, batch in enumerate(session.batches):
        origin = find_origin(_loss_runner(session, batch, index))
        if origin is not None:
            break
    session.loaded.module.zero_grad(set_to_none=True)
    return origin


def _batch_size(batch: Batch) -> int:
    first = next((t for t in (*batch.args, *batch.kwargs.values()) if isinstance(t, torch.Tensor)), None)
    return int(first.shape[0]) if first is not None and first.dim() > 0 else 0


def _backward_runner(session: Session, batch: Batch) -> Callable[[], None]:
    def run() -> None:
        loss = loss_of(session, batch, forward(session, batch), 0).value
        (loss * session.loss_scale).backward()

    return run


def _loss_runner(session: Session, batch: Batch, index: int) -> Callable[[], torch.Tensor]:
    return lambda: loss_of(session, batch, forward(session, batch), index).value


def _batch_shapes(batches: list[Batch]) -> tuple[str, ...]:
    """What a hook or the caller handed over, as the header shows it: ('float32[32x784]',)."""
    if not batches:
        return ()
    first = batches[0]
    return tuple(describe(a) for a in first.args) + tuple(
        f"{k}={describe(v)}" for k, v in first.kwargs.items()
    )


def _model_info(session: Session) -> ModelInfo:
    model = session.loaded.module
    params = {id(p): p for p in model.parameters()}.values()
    return ModelInfo(
        class_name=type(model).__name__,
        parameters=sum(p.numel() for p in params),
        trainable=sum(p.numel() for p in params if p.requires_grad),
        device=session.device,
        dtype=session.config.dtype,
        found_by=session.loaded.found_by,
        init_args=dict(session.loaded.init_args),
        source=session.loaded.source,
    )


def _run_info(session: Session, seconds: float) -> RunInfo:
    loss = session.loss
    plan = session.plan
    inputs = tuple(str(s) for s in plan.specs) or _batch_shapes(session.batches)
    inputs += describe_extra_args(plan)
    if session.config.target_arg:
        inputs += (f"{session.config.target_arg}=<targets>",)
    return RunInfo(
        batches=len(session.batches),
        steps=session.config.steps,
        seed=session.config.seed,
        loss=loss.name if loss else session.config.loss,
        loss_reason=loss.reason if loss else "",
        inputs=inputs,
        seconds=seconds,
        input_origin=plan.origin,
    )
