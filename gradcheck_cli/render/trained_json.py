"""The JSON sections of --weights, --versus, the --steps extension, gates and attention."""

from __future__ import annotations

import math
from typing import Any

from gradcheck_cli.records.report import Report
from gradcheck_cli.records.stats import TrainingHistory
from gradcheck_cli.records.trained import CheckpointInfo, Versus


def _num(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _pair(pair: tuple[float, float]) -> list[float | None]:
    return [_num(pair[0]), _num(pair[1])]


def checkpoint_section(info: CheckpointInfo) -> dict[str, Any]:
    return {
        "path": info.path,
        "format": info.format,
        "container_key": info.container_key,
        "stripped_prefixes": list(info.stripped_prefixes),
        "added_prefix": info.added_prefix,
        "loaded": info.loaded,
        "model_tensors": info.model_tensors,
        "at_init": list(info.at_init),
        "unexpected": list(info.unexpected),
        "shape_mismatched": list(info.shape_mismatched),
        "ignored": list(info.ignored),
        "step": info.step,
        "epoch": info.epoch,
        "optimizer_state": info.optimizer_state,
        "seconds": round(info.seconds, 3),
    }


def versus_section(versus: Versus) -> dict[str, Any]:
    """Each pair is [this state, reference state]."""
    return {
        "reference": versus.reference,
        "loss": _pair(versus.loss),
        "layers": [
            {
                "name": layer.name,
                "grad_norm": _pair(layer.grad_norm),
                "grad_weight_ratio": _pair(layer.grad_weight_ratio),
                "weight_norm": _pair(layer.weight_norm),
            }
            for layer in versus.layers
        ],
        "activations": [
            {
                "name": a.name,
                "dead_fraction": _pair(a.dead_fraction),
                "saturated_fraction": _pair(a.saturated_fraction),
            }
            for a in versus.activations
        ],
        "through_time": [
            {"module": t.module, "horizon": list(t.horizon), "per_step_factor": _pair(t.per_step_factor)}
            for t in versus.through_time
        ],
        "attention": [
            {
                "name": a.name,
                "entropy": _pair(a.entropy),
                "collapsed_fraction": _pair(a.collapsed_fraction),
                "max_logit": _pair(a.max_logit),
            }
            for a in versus.attention
        ],
        "gates": [
            {"module": g.module, "gate": g.gate, "saturated_fraction": _pair(g.saturated_fraction)}
            for g in versus.gates
        ],
    }


def training_extension(history: TrainingHistory) -> dict[str, Any]:
    """What issue 16 adds to the `training` section: the optimizer's origin, updates, divergence."""
    d = history.divergence
    return {
        "optimizer_source": history.optimizer_source,
        "loop": history.loop,
        "scheduler": history.scheduler,
        "lrs": [_num(v) for v in history.lrs],
        "optimizer_state": history.optimizer_state or None,
        "clip": history.clip,
        "steps_planned": history.steps_planned,
        "total_grad_norm": [_num(v) for v in history.total_grad_norm],
        "update_ratios": {name: [_num(v) for v in values] for name, values in history.update_ratios.items()},
        "divergence": None
        if d is None
        else {
            "step": d.step,
            "loss": _num(d.loss),
            "forward_layer": d.forward_layer,
            "gradient_layers": list(d.gradient_layers),
            "weight_layers": list(d.weight_layers),
        },
    }


def json_sections(report: Report) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if report.checkpoint is not None:
        out["checkpoint"] = checkpoint_section(report.checkpoint)
    if report.versus is not None:
        out["versus"] = versus_section(report.versus)
    if report.attention:
        out["attention"] = [
            {
                "name": a.name,
                "entropy": _num(a.entropy),
                "collapsed_fraction": _num(a.collapsed_fraction),
                "max_logit": _num(a.max_logit),
                "queries": a.queries,
            }
            for a in report.attention
        ]
    if report.gate_saturation:
        out["gate_saturation"] = [
            {
                "module": g.module,
                "type": g.type,
                "layers": g.layers,
                "saturated_fraction": {k: _num(v) for k, v in g.gates.items()},
            }
            for g in report.gate_saturation
        ]
    return out
