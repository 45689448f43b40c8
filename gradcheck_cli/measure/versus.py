"""--versus init|PATH: measure a second state of the same model with the same batches and seed.

The reference state is put into the model, measured by the same probe, and the model's own
state is put back, so nothing else in the run changes. 'init' is the model as built (before
--weights and --steps).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from gradcheck_cli.measure.collect import probe
from gradcheck_cli.measure.device import seed_everything
from gradcheck_cli.measure.passes import Prepared, StageRecords
from gradcheck_cli.records.stats import ProbeResult
from gradcheck_cli.records.trained import (
    ActivationVersus,
    AttentionVersus,
    CellGateVersus,
    HorizonVersus,
    LayerVersus,
    Versus,
)

State = dict[str, torch.Tensor]
T = TypeVar("T")


def state_copy(model: nn.Module) -> State:
    """The model's state (parameters and buffers), detached and cloned."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def put_state(model: nn.Module, state: State) -> None:
    with torch.no_grad():
        model.load_state_dict(state)


def load_reference(
    model: nn.Module, reference: str, init_state: State | None, device: str, partial: bool
) -> str:
    """Put the reference state into `model`; returns how the report names it."""
    if reference == "init":
        assert init_state is not None
        put_state(model, init_state)
        return "init"
    from gradcheck_cli.load.weights import load_weights

    load_weights(model, Path(reference), device, partial)
    return reference


def measure_versus(
    prepared: Prepared, records: StageRecords, now: ProbeResult, init_state: State | None, started: float
) -> ProbeResult:
    """`now` with its `versus` filled: the reference state measured by the same probe, same batches
    (and the same float16 loss scale; the reference state was not trained, so no training record)."""
    config, model = prepared.config, prepared.model
    assert config.versus is not None
    own = state_copy(model)
    try:
        name = load_reference(model, config.versus, init_state, prepared.device, config.weights_partial)
        seed_everything(config.seed)
        then = probe(prepared, started, dataclasses.replace(records, training=None))
    finally:
        put_state(model, own)
    return dataclasses.replace(now, versus=compare(now, then, name))


def compare(now: ProbeResult, then: ProbeResult, reference: str) -> Versus:
    """Pair each layer, activation and recurrent module of this state with the reference's."""
    return Versus(
        reference=reference,
        layers=_layers(now, then),
        activations=_activations(now, then),
        through_time=_horizons(now, then),
        gates=_cell_gates(now, then),
        attention=_attention(now, then),
        loss=(now.loss_value, then.loss_value),
    )


def _pairs(now: Iterable[T], then: Iterable[T], key: Callable[[T], str]) -> Iterator[tuple[T, T]]:
    """Each item of this state with the reference's item of the same name (unmatched ones left out)."""
    earlier = {key(item): item for item in then}
    for item in now:
        old = earlier.get(key(item))
        if old is not None:
            yield item, old


def _layers(now: ProbeResult, then: ProbeResult) -> tuple[LayerVersus, ...]:
    return tuple(
        LayerVersus(
            name=layer.name,
            grad_norm=(layer.grad_norm, old.grad_norm),
            grad_weight_ratio=(layer.grad_weight_ratio, old.grad_weight_ratio),
            weight_norm=(layer.weight_norm, old.weight_norm),
        )
        for layer, old in _pairs(now.layers, then.layers, lambda layer: layer.name)
    )


def _activations(now: ProbeResult, then: ProbeResult) -> tuple[ActivationVersus, ...]:
    nan = (math.nan, math.nan)  # dead units are a ReLU notion; others only saturate
    return tuple(
        ActivationVersus(
            name=act.name,
            dead_fraction=(act.dead_fraction, old.dead_fraction) if act.family == "relu" else nan,
            saturated_fraction=(act.saturated_fraction, old.saturated_fraction),
        )
        for act, old in _pairs(now.activations, then.activations, lambda act: act.name)
    )


def _horizons(now: ProbeResult, then: ProbeResult) -> tuple[HorizonVersus, ...]:
    return tuple(
        HorizonVersus(
            module=tt.module,
            horizon=(tt.horizon, old.horizon),
            per_step_factor=(tt.per_step_factor, old.per_step_factor),
        )
        for tt, old in _pairs(now.through_time, then.through_time, lambda tt: tt.module)
    )


def _cell_gates(now: ProbeResult, then: ProbeResult) -> tuple[CellGateVersus, ...]:
    return tuple(
        CellGateVersus(module=g.module, gate=gate, saturated_fraction=(value, old.gates.get(gate, math.nan)))
        for g, old in _pairs(now.gate_saturation, then.gate_saturation, lambda g: g.module)
        for gate, value in g.gates.items()
    )


def _attention(now: ProbeResult, then: ProbeResult) -> tuple[AttentionVersus, ...]:
    return tuple(
        AttentionVersus(
            name=a.name,
            entropy=(a.entropy, old.entropy),
            collapsed_fraction=(a.collapsed_fraction, old.collapsed_fraction),
            max_logit=(a.max_logit, old.max_logit),
        )
        for a, old in _pairs(now.attention, then.attention, lambda a: a.name)
    )
