"""zero-gradient: a trainable layer whose measured gradient is exactly zero or below float resolution."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import rule
from gradcheck_cli.judge.rules.profile import dead_cut, sig, training_evidence
from gradcheck_cli.judge.rules.profile import where as where_of
from gradcheck_cli.judge.rules.vanishing_gradients import VanishingLimits, vanishing_gradients
from gradcheck_cli.records.findings import Finding, LayerStatus, Severity, Suggestion
from gradcheck_cli.records.stats import LayerStats, ProbeResult
from gradcheck_cli.records.text import count, join, verb


@dataclass(frozen=True, slots=True)
class ZeroGradientLimits:
    floor: float = 1e-7
    """A gradient/weight ratio under this is below what a float32 weight can register at any
    usual learning rate (float32 resolves 1.2e-7 of a value): the layer cannot move."""


@rule(id="zero-gradient", severity=Severity.ERROR, fixes=("lr", "init", "graph"), limits=ZeroGradientLimits)
def zero_gradient(probe: ProbeResult, limits: ZeroGradientLimits) -> Iterator[Finding]:
    """Trainable layers whose measured gradient is exactly zero, or too small for float32 to apply.

    ## What it detects
    A trainable layer that ran, got a gradient (`.grad` is a tensor) and whose hooks fired,
    but whose parameter gradient is exactly 0 (every element, median over the batches: an
    error), or whose gradient/weight ratio is below `floor` (a warning): a status is never `ok`
    on a zero. Layers left out here because another finding already explains them: a layer
    behind a zero-initialised gate (`gated`; at init, with a gate the first step opens, no
    exact zero is reported), a layer right before a mostly dead ReLU
    (`dead-units`), layers a `vanishing-gradients` finding already lists (a depth profile
    that falls by orders of magnitude, or most weight layers below the floor), and, while
    that finding fires, every layer below the floor (the same story). Embeddings are judged on an exact zero only
    (a batch touches few rows, so their ratio is small by design).

    ## Why it matters
    A zero gradient moves nothing: the layer is frozen in practice although it is trainable.
    After training, it is the wreck a high learning rate leaves (every ReLU downstream dead,
    a saturated softmax); at init, a path the loss does not reach. A gradient/weight ratio of
    1e-21 (query/key layers behind a collapsed attention) is the same in float32: at lr 1 the
    update is far below the weights' resolution and is rounded away.

    ## Evidence
    `zero` and `below_resolution` (layer names), `grad_norm` and `grad_weight_ratio` per listed
    layer, `dead_downstream` (mostly dead ReLUs after the first listed layer), `floor`; under
    `--steps`, the loss and the first layer's gradient norm per step.

    ## Thresholds
    `floor` = 1e-7: float32 has 24 bits of mantissa, so w + lr·g equals w when |lr·g| < 6e-8·|w|;
    below 1e-7 no usual learning rate (<= 1) moves the weights.

    ## Fixes
    lr: after training at too high a rate (dead ReLUs, saturated softmax), restart from an
    earlier checkpoint at a lower learning rate; the wreck does not recover by itself.
    init: at init, rescale the initialisation so the path carries a gradient.
    graph: a path cut by a constant (a mask, a zero multiplier) keeps the layer from the loss.

    ## Example
    A ReLU MLP trained 30 Adam steps at lr 5 (`tests/test_evidence.py`): every unit after fc2
    dies, fc1's gradient is exactly 0 and it is listed here instead of showing `ok`.
    """
    listed = _listed(probe, limits.floor)
    if not listed:
        return
    zero = [x.name for x in listed if x.grad_norm == 0]
    tiny = [x.name for x in listed if x.grad_norm != 0]
    dead = _dead_downstream(probe, listed[0])
    yield Finding(
        id="zero-gradient",
        severity=Severity.ERROR if zero else Severity.WARNING,
        layers=tuple(x.name for x in listed),
        status=LayerStatus.VANISHING,
        message=_message(zero, tiny, listed, dead),
        evidence={
            "zero": zero,
            "below_resolution": tiny,
            "grad_norm": [sig(x.grad_norm) for x in listed],
            "grad_weight_ratio": [sig(x.grad_weight_ratio) for x in listed],
            "dead_downstream": dead,
            "floor": limits.floor,
            **training_evidence(probe, listed[0].name),
        },
        suggestions=_suggestions(probe, listed[0], dead),
    )


def _listed(probe: ProbeResult, floor: float) -> list[LayerStats]:
    vanishing = list(vanishing_gradients(probe, VanishingLimits()))
    explained = dead_cut(probe) | {name for f in vanishing for name in f.layers}
    # At init, a zero-initialised gate that the first step opens closes what is behind it by design.
    at_init = probe.training is None and probe.checkpoint is None
    gated = at_init and any(not gate.stuck for gate in probe.gates)
    out = []
    for layer in probe.layers:
        judged = layer.trainable and layer.has_grad and layer.hooked and layer.measured
        if (
            not judged
            or layer.shared_with is not None
            or layer.gated_by is not None
            or layer.name in explained
        ):
            continue
        zero = layer.grad_norm == 0 and layer.weight_norm > 0 and not gated
        ratio = layer.grad_weight_ratio
        tiny = layer.type != "Embedding" and math.isfinite(ratio) and 0 < ratio < floor and not vanishing
        if zero or tiny:
            out.append(layer)
    return sorted(out, key=lambda x: x.index)


def _dead_downstream(probe: ProbeResult, first: LayerStats) -> list[str]:
    order = {layer.name: layer.index for layer in probe.layers}
    return [
        a.name
        for a in probe.activations
        if a.family == "relu" and a.dead_fraction > 0.5 and order.get(a.after or "", -1) >= first.index
    ]


def _message(zero: list[str], tiny: list[str], listed: list[LayerStats], dead: list[str]) -> str:
    parts = []
    if zero:
        parts.append(
            f"{count(len(zero), 'trainable layer')} {verb('get', len(zero))} a gradient of exactly 0 ({join(zero)})"
        )
    if tiny:
        worst = min((x for x in listed if x.name in tiny), key=lambda x: x.grad_weight_ratio)
        parts.append(
            f"{count(len(tiny), 'trainable layer')} {verb('get', len(tiny))} a gradient too small for float32 to apply "
            f"({join(tiny)}; {worst.name}: {worst.grad_weight_ratio:.1e} of its weights)"
        )
    cause = f", behind {join(dead)} (mostly dead)" if dead else ""
    return "; ".join(parts) + f"{cause}: {'it does' if len(listed) == 1 else 'they do'} not learn."


def _suggestions(probe: ProbeResult, first: LayerStats, dead: list[str]) -> tuple[Suggestion, ...]:
    where = where_of(first.source, probe)
    if dead or probe.training is not None or probe.checkpoint is not None:
        return (
            Suggestion(
                fix="lr",
                text="the trained state cannot recover by itself: restart from an earlier checkpoint "
                "at a lower learning rate (or with warm-up and gradient clipping)",
            ),
        )
    return (
        Suggestion(
            fix="init", text=f"rescale the initialisation of {first.name} and what follows it", where=where
        ),
        Suggestion(
            fix="graph",
            text="look for a constant mask or zero multiplier between it and the loss",
            where=where,
        ),
    )
