"""--versus init|PATH: measure a second state of the same model with the same batches and seed.

The reference state is put into the model, measured by the same probe, and the model's own
state is put back, so nothing else in the run changes. 'init' is the model as built (before
--weights and --steps).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from gradcheck_cli.device import seed_everything
from gradcheck_cli.stats import ProbeResult
from gradcheck_cli.trained import (
    ActivationVersus,
    AttentionVersus,
    GateVersus,
    HorizonVersus,
    LayerVersus,
    Versus,
)

if TYPE_CHECKING:
    from gradcheck_cli.session import Session

State = dict[str, torch.Tensor]


def snapshot(model: nn.Module) -> State:
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
    from gradcheck_cli.weights import load_weights

    load_weights(model, Path(reference), device, partial)
    return reference


def measure_versus(
    session: Session, now: ProbeResult, init_state: State | None, started: float
) -> ProbeResult:
    """`now` with its `versus` filled: the reference state measured by the same probe, same batches."""
    from gradcheck_cli.collect import probe

    config, model = session.config, session.loaded.module
    assert config.versus is not None
    own, training = snapshot(model), session.training
    try:
        name = load_reference(model, config.versus, init_state, session.device, config.weights_partial)
        seed_everything(config.seed)
        session.training = None
        then = probe(session, started)
    finally:
        put_state(model, own)
        session.training = training
    return dataclasses.replace(now, versus=compare(now, then, name))


def compare(now: ProbeResult, then: ProbeResult, reference: str) -> Versus:
    """Pair each layer, activation and recurrent module of this state with the reference's."""
    return Versus(
        reference=reference,
        layers=_layers(now, then),
        activations=_activations(now, then),
        through_time=_horizons(now, then),
        gates=_gates(now, then),
        attention=_attention(now, then),
        loss=(now.loss_value, then.loss_value),
    )


def _layers(now: ProbeResult, then: ProbeResult) -> tuple[LayerVersus, ...]:
    earlier = {layer.name: layer for layer in then.layers}
    out = []
    for layer in now.layers:
        old = earlier.get(layer.name)
        if old is not None:
            out.append(
                LayerVersus(
                    name=layer.name,
                    grad_norm=(layer.grad_norm, old.grad_norm),
                    grad_weight_ratio=(layer.grad_weight_ratio, old.grad_weight_ratio),
                    weight_norm=(layer.weight_norm, old.weight_norm),
                )
            )
    return tuple(out)


def _activations(now: ProbeResult, then: ProbeResult) -> tuple[ActivationVersus, ...]:
    earlier = {a.name: a for a in then.activations}
    out = []
    for act in now.activations:
        old = earlier.get(act.name)
        if old is None:
            continue
        relu = act.family == "relu"  # dead units are a ReLU notion; others only saturate
        out.append(
            ActivationVersus(
                name=act.name,
                dead_fraction=(act.dead_fraction, old.dead_fraction) if relu else (math.nan, math.nan),
                saturated_fraction=(act.saturated_fraction, old.saturated_fraction),
            )
        )
    return tuple(out)


def _horizons(now: ProbeResult, then: ProbeResult) -> tuple[HorizonVersus, ...]:
    earlier = {t.module: t for t in then.through_time}
    out = []
    for tt in now.through_time:
        old = earlier.get(tt.module)
        if old is not None:
            out.append(
                HorizonVersus(
                    module=tt.module,
                    horizon=(tt.horizon, old.horizon),
                    per_step_factor=(tt.per_step_factor, old.per_step_factor),
                )
            )
    return tuple(out)


def _gates(now: ProbeResult, then: ProbeResult) -> tuple[GateVersus, ...]:
    earlier = {g.module: g.gates for g in then.gate_saturation}
    return tuple(
        GateVersus(
            module=g.module, gate=gate, saturated_fraction=(value, earlier[g.module].get(gate, math.nan))
        )
        for g in now.gate_saturation
        if g.module in earlier
        for gate, value in g.gates.items()
    )


def _attention(now: ProbeResult, then: ProbeResult) -> tuple[AttentionVersus, ...]:
    earlier = {a.name: a for a in then.attention}
    return tuple(
        AttentionVersus(
            name=a.name,
            entropy=(a.entropy, earlier[a.name].entropy),
            collapsed_fraction=(a.collapsed_fraction, earlier[a.name].collapsed_fraction),
            max_logit=(a.max_logit, earlier[a.name].max_logit),
        )
        for a in now.attention
        if a.name in earlier
    )
