"""Hand-built ProbeResults for rule tests: no torch, every number chosen by the test."""

from __future__ import annotations

from typing import Any

from gradcheck_cli.records.stats import (
    ActivationStats,
    LayerStats,
    ModelInfo,
    ProbeResult,
    RunInfo,
    ThroughTime,
)


def layer(name: str, index: int, act_grad_norm: float = 1.0, **fields: Any) -> LayerStats:
    values: dict[str, Any] = {
        "type": "Linear",
        "parameters": 100,
        "trainable": True,
        "grad_norm": 0.1,
        "weight_norm": 1.0,
        "grad_weight_ratio": 0.1,
        "act_grad_rms": act_grad_norm / 10,
        "zero_grad_fraction": 0.0,
        "nonfinite": 0,
        "role": ".".join("#" if p.isdigit() else p for p in name.split(".")),
        "kind": "weight",
        "width": 64,
    }
    values.update(fields)
    return LayerStats(name=name, index=index, act_grad_norm=act_grad_norm, **values)


def stack(norms: list[float], role: str = "blocks.{}.fc", **fields: Any) -> tuple[LayerStats, ...]:
    """A stack of same-role layers in forward order with the given output-gradient norms."""
    return tuple(layer(role.format(i), i, n, **fields) for i, n in enumerate(norms))


def activation(
    name: str, family: str = "relu", dead: float = 0.0, saturated: float = 0.0, **fields: Any
) -> ActivationStats:
    values: dict[str, Any] = {
        "type": "ReLU" if family == "relu" else family.title(),
        "after": None,
        "units": 64,
    }
    values.update(fields)
    return ActivationStats(
        name=name, family=family, dead_fraction=dead, saturated_fraction=saturated, **values
    )


def through(curve: list[float], type: str = "RNN", **fields: Any) -> ThroughTime:
    values: dict[str, Any] = {
        "module": "rnn",
        "per_step_factor": 0.5,
        "horizon": sum(1 for v in curve[:-1] if v >= 1e-3),
        "horizon_floor": 1e-3,
        "hidden_size": 32,
        "input_size": 8,
        "batch_first": True,
    }
    values.update(fields)
    return ThroughTime(type=type, steps=len(curve), curve=tuple(curve), **values)


def probe(
    layers: tuple[LayerStats, ...] = (),
    activations: tuple[ActivationStats, ...] = (),
    through_time: tuple[ThroughTime, ...] = (),
    **fields: Any,
) -> ProbeResult:
    return ProbeResult(
        model=ModelInfo(class_name="Net", parameters=0, trainable=0, device="cpu", dtype="float32"),
        run=RunInfo(batches=3, steps=0, seed=0, loss="ce"),
        layers=layers,
        activations=activations,
        through_time=through_time,
        **fields,
    )
