"""vanishing-gradients: the backward signal shrinks by orders of magnitude toward the input."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import rule
from gradcheck_cli.judge.rules.gated import stuck_gates_finding
from gradcheck_cli.judge.rules.profile import (
    DepthGroup,
    comparable,
    dead_cut,
    depth_groups,
    flow,
    median,
    orders,
    sig,
    training_evidence,
)
from gradcheck_cli.judge.rules.profile import where as where_of
from gradcheck_cli.records.findings import Finding, LayerStatus, Severity, Suggestion
from gradcheck_cli.records.stats import LayerStats, ProbeResult
from gradcheck_cli.records.text import common, count, earliest_of, join, named, verb


@dataclass(frozen=True, slots=True)
class VanishingLimits:
    orders: float = 3.0
    """Fire when the first layer's output gradient is this many orders below the last's."""
    layer_orders: float = 2.0
    """Once fired, mark layers this many orders below the last as vanishing."""
    min_layers: int = 3
    """Depth comparisons need at least this many comparable layers."""
    grad_weight_floor: float = 1e-7
    """Absolute floor: a grad/weight ratio under this moves weights by nothing at any usual lr."""


@rule(
    id="vanishing-gradients",
    severity=Severity.ERROR,
    fixes=("residual", "batchnorm", "layernorm", "activation", "init"),
    limits=VanishingLimits,
)
def vanishing_gradients(probe: ProbeResult, limits: VanishingLimits) -> Iterator[Finding]:
    """Gradients shrink by orders of magnitude from the output layers to the input layers.

    ## What it detects
    The L2 norm of the gradient with respect to each layer's output, compared across
    depth between layers of the same role (e.g. `blocks.#.fc1`; convolutions only within
    one resolution). It fires when the first layer's gradient is more than `orders`
    orders of magnitude below the last layer's, or when the weight layers' grad/weight
    ratios sit under an absolute floor that no realistic learning rate overcomes.

    ## Why it matters
    Layers near the input receive almost no learning signal: they stay at their random
    initialisation while the top of the network trains, so depth buys nothing.

    ## Evidence
    `first_to_last` (ratio of output-gradient norms), `orders` (its log10), `threshold`,
    `group` (the role compared), `layers_compared`, `gain_db` (attenuation across each
    layer, backward, in dB), `first_to_last_per_batch` and `spread_orders` (the verdict
    uses the median over batches; the spread shows how far single batches differ), `breaks_at` (the layer with the steepest drop),
    `grad_weight_ratio` (median over weight layers) and `grad_weight_floor`.
    Behind zero-initialised gates (see `gradcheck_cli/measure/zero_gains.py`) the group is marked
    `behind_gates` and compared on `open_act_grad_norm`, the flow one SGD step ahead. A stuck
    gate (zero value, zero gradient) gives `stuck_gates`, `gate_value`, `gate_grad_norm` and
    `layers_behind`.

    ## Thresholds
    `orders` = 3.0: a 1000x drop is far outside what healthy networks show (they stay
    within about 10x across a role). `layer_orders` = 2.0 marks individual layers.
    Layers whose output gradient is exactly zero because a mostly dead ReLU follows them
    are left out: that is `dead-units`, not vanishing. A zero norm never yields a ratio
    ("infinitely smaller" is impossible): a layer whose output gradient is exactly zero
    because a zero-initialised gain or weight downstream gates it is `gated` when that
    parameter's own gradient is non-zero (the first step opens it; the layers behind it are
    compared with each other on the flow once it opens, and left out of the absolute floor),
    and an error here when that gradient is zero too (a zero gain behind a zero weight: the
    gate never opens, the layers behind it never learn) unless it becomes non-zero once the
    gates in front of it have taken their first step (a chain of two gains, a zero-init
    projection behind a zero-init BatchNorm gain: it opens at step 2 and is gated too). Gated
    layers compare only with layers behind gates of the same width (one stage). Roles with fewer than `min_layers`
    members give no depth verdict; layers are never grouped across roles by type.
    `grad_weight_floor` = 1e-7: at lr 1, SGD would move such weights by 1e-7 of their
    size per step, and Adam's default eps (1e-8) swamps gradients this small.

    ## Fixes
    residual: add skip connections so the gradient has an identity path.
    batchnorm: normalise activations so each layer's gain stays near 1.
    layernorm: the same for sequence models and MLPs (pre-norm blocks).
    activation: replace sigmoid/tanh with ReLU or GELU (derivative 1, not <=0.25).
    init: He init for ReLU, Xavier for tanh, so the backward gain per layer is near 1.

    ## Example
    `gradcheck analyze builtin:sigmoid-mlp` fires; `builtin:residual-mlp` is its
    healthy twin.
    """
    stuck = [gate for gate in probe.gates if gate.stuck]
    if stuck:
        yield stuck_gates_finding(stuck, probe)
        return
    for group in depth_groups(probe.layers, limits.min_layers, dead_cut(probe)):
        finding = _check_group(group, probe, limits)
        if finding:
            yield finding
            return
    stalled = _stalled(probe.layers, limits.grad_weight_floor)
    if stalled:
        yield _floor_finding(stalled, probe, limits)


def _check_group(group: DepthGroup, probe: ProbeResult, limits: VanishingLimits) -> Finding | None:
    ratio = group.first_to_last
    if math.isnan(ratio) or orders(ratio) > -limits.orders:
        return None
    last = group.norms[-1]
    bar = last * 10 ** (-limits.layer_orders)
    marked = tuple(layer.name for layer in group.layers if flow(layer) < bar)
    breaks = group.steepest_drop()
    weights = comparable(probe.layers)
    return Finding(
        id="vanishing-gradients",
        severity=Severity.ERROR,
        layers=marked,
        status=LayerStatus.VANISHING,
        message=(
            f"{_gated_text(group)}The gradient reaching {named(group.layers[0].name)} is {1 / ratio:.1e}x "
            f"smaller than at {named(group.layers[-1].name)}: "
            f"{earliest_of(len(marked), group.key, common([x.type for x in group.layers]), len(group.layers))} "
            f"barely {verb('learn', len(marked))}"
            + (f"; the signal drops most entering {named(breaks.name)}." if breaks else ".")
        ),
        evidence={
            "first_to_last": sig(ratio),
            "orders": sig(orders(ratio)),
            "threshold": limits.orders,
            "first_to_last_per_batch": [sig(r) for r in group.batch_ratios()],
            "spread_orders": sig(group.spread_orders()),
            "group": group.key,
            "layers_compared": [layer.name for layer in group.layers],
            "act_grad_norm": [sig(v) for v in group.norms],
            "gain_db": [round(v, 2) for v in group.gain_db()],
            "breaks_at": breaks.name if breaks else None,
            "grad_weight_ratio": sig(median([w.grad_weight_ratio for w in weights])),
            "grad_weight_floor": limits.grad_weight_floor,
            "behind_gates": group.gated,
            **training_evidence(probe, group.layers[0].name),
        },
        suggestions=_suggestions(group.layers, probe),
    )


def _stalled(layers: tuple[LayerStats, ...], floor: float) -> list[LayerStats]:
    # Behind an open gate a zero gradient is the design: its flow is judged by depth instead.
    weights = [w for w in comparable(layers) if w.type != "Embedding" and w.gated_by is None]
    stalled = [w for w in weights if w.grad_weight_ratio < floor]
    return stalled if weights and len(stalled) * 2 > len(weights) else []


def _floor_finding(stalled: list[LayerStats], probe: ProbeResult, limits: VanishingLimits) -> Finding:
    ratios = [w.grad_weight_ratio for w in stalled]
    return Finding(
        id="vanishing-gradients",
        severity=Severity.ERROR,
        layers=tuple(w.name for w in stalled),
        status=LayerStatus.VANISHING,
        message=(
            f"{count(len(stalled), 'weight layer')} {verb('get', len(stalled))} gradients around "
            f"{median(ratios):.1e} of {'its' if len(stalled) == 1 else 'their'} weights' size, too small "
            f"for any usual learning rate to move {'it' if len(stalled) == 1 else 'them'}."
        ),
        evidence={
            "grad_weight_ratio": [sig(r) for r in ratios],
            "grad_weight_floor": limits.grad_weight_floor,
            "threshold": limits.grad_weight_floor,
            "layers_compared": [w.name for w in stalled],
        },
        suggestions=_suggestions(tuple(stalled), probe),
    )


def _suggestions(layers: tuple[LayerStats, ...], probe: ProbeResult) -> tuple[Suggestion, ...]:
    first = layers[0]
    where = where_of(first.source, probe)
    saturating = sorted({a.type for a in probe.activations if a.family in ("sigmoid", "tanh")})
    out = [
        Suggestion(
            fix="residual",
            text=f"add skip connections (x = x + block(x)) around the blocks from {named(first.name)} on",
            where=where,
        ),
        Suggestion(
            fix="layernorm" if first.type == "Linear" else "batchnorm",
            text=_norm_text(first),
            where=where,
        ),
    ]
    if saturating:
        out.append(
            Suggestion(
                fix="activation",
                text=f"replace {join(saturating)} with ReLU or GELU: "
                + (
                    "the sigmoid's derivative is at most 0.25"
                    if any(a.family == "sigmoid" for a in probe.activations)
                    else "the tanh's derivative is below 1 away from 0"
                )
                + ", so it shrinks the gradient at every layer, while ReLU passes it with gain 1",
                where=where,
            )
        )
    out.append(
        Suggestion(
            fix="init", text="use He (kaiming_normal_) init for ReLU layers, Xavier for tanh", where=where
        )
    )
    return tuple(out)


def _norm_text(layer: LayerStats) -> str:
    # features: out_features / out_channels (the last dimension), never the per-sample numel
    # (a Linear on 16 tokens of 256 features normalises over 256, not 4096)
    if layer.type == "Linear":
        return f"insert nn.LayerNorm({layer.features or layer.width}) after {named(layer.name)} and its peers"
    if layer.type.startswith("Conv"):
        channels = layer.features or (
            layer.width // max(1, math.prod(layer.spatial)) if layer.spatial else layer.width
        )
        return f"insert nn.BatchNorm{len(layer.spatial) or 2}d({channels}) after {named(layer.name)} and its peers"
    return f"normalise the output of {named(layer.name)} and its peers"


def _gated_text(group: DepthGroup) -> str:
    if not group.gated:
        return ""
    return "Once the zero-initialised gates open (measured one SGD step ahead): "
