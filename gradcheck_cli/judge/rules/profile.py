"""The gain profile of the backward signal, compared like with like.

Raw gradient norms of different module types differ by 10^3 to 10^6 in healthy models
(norm-layer gains, biases, scale-invariant paths), and the RMS of an output gradient
shrinks with the output's size. So depth comparisons use only weight layers
(Linear/Conv/recurrent/embedding), skip tied copies, group layers of the same role
(name with block indices replaced) and, for convolutions, the same output resolution,
and compare L2 norms of the output gradient.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from gradcheck_cli.records.stats import LayerStats, ProbeResult, SourceRef


@dataclass(frozen=True, slots=True, kw_only=True)
class DepthGroup:
    """Comparable layers in forward order, with the output-gradient L2 norm of each."""

    key: str
    layers: tuple[LayerStats, ...]

    @property
    def norms(self) -> list[float]:
        return [flow(layer) for layer in self.layers]

    @property
    def gated(self) -> bool:
        """Layers behind zero-initialised gates, compared on the flow once the gates open."""
        return self.layers[0].gated_by is not None

    @property
    def first_to_last(self) -> float:
        """Output-gradient norm at the first layer over the last: <1 shrinks toward the input.

        The median of the per-batch ratios when they were recorded, so that one odd batch
        cannot flip the verdict; else the ratio of the per-layer medians.
        """
        per_batch = [r for r in self.batch_ratios() if not math.isnan(r)]
        if per_batch:
            return median_all(per_batch)
        return _ratio(self.norms[0], self.norms[-1])

    def batch_ratios(self) -> list[float]:
        """first/last for each batch (empty when the per-batch norms are not recorded)."""
        first, last = self.layers[0].batch_act_grad_norm, self.layers[-1].batch_act_grad_norm
        if self.gated or not first or len(first) != len(last):
            return []
        return [_ratio(a, b) for a, b in zip(first, last, strict=True)]

    def spread_orders(self) -> float:
        """Orders of magnitude between the largest and smallest per-batch ratio (0 = consistent)."""
        ratios = [r for r in self.batch_ratios() if r > 0 and math.isfinite(r)]
        return math.log10(max(ratios) / min(ratios)) if len(ratios) > 1 else 0.0

    def gain_db(self) -> list[float]:
        """Attenuation of the signal crossing each layer, backward: 20·log10(norm_l / norm_{l+1})."""
        return [_db(a, b) for a, b in zip(self.norms[:-1], self.norms[1:], strict=True)]

    def steepest_drop(self) -> LayerStats | None:
        """The layer where the backward signal falls most (the signal 'breaks' entering it)."""
        gains = self.gain_db()
        if not gains:
            return None
        worst = min(range(len(gains)), key=lambda i: gains[i])
        return self.layers[worst]

    def steepest_rise(self) -> LayerStats | None:
        gains = self.gain_db()
        if not gains:
            return None
        worst = max(range(len(gains)), key=lambda i: gains[i])
        return self.layers[worst]


def flow(layer: LayerStats) -> float:
    """The output-gradient norm a depth comparison uses: behind a gate, the flow once it opens."""
    return layer.open_act_grad_norm if layer.gated_by is not None else layer.act_grad_norm


def _ratio(first: float, last: float) -> float:
    """first/last; NaN (no verdict) when either is zero or not finite: a zero norm is explained
    by a gate, a dead unit or a missed hook, never by an infinite ratio."""
    if not (first > 0 and last > 0 and math.isfinite(first) and math.isfinite(last)):
        return math.nan
    return first / last


def median_all(values: list[float]) -> float:
    """Median that keeps 0 and inf (a batch that underflowed to zero still counts)."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    low, high = ordered[mid - 1], ordered[mid]
    # Ratios live on a log scale: the middle of two is their geometric mean.
    return math.sqrt(low * high) if low > 0 and math.isfinite(high) else low


def _db(a: float, b: float) -> float:
    if a <= 0 or b <= 0 or not math.isfinite(a) or not math.isfinite(b):
        return -math.inf if a <= 0 < b else 0.0
    return 20.0 * math.log10(a / b)


def comparable(layers: Iterable[LayerStats], cut_by_dead: frozenset[str] = frozenset()) -> list[LayerStats]:
    """Weight layers measured and trained, counted once, with a positive finite output-gradient
    norm (a zero is a gate, a dead unit or a stuck path, judged by its own finding);
    `cut_by_dead` left out (see dead_cut)."""
    return [
        layer
        for layer in layers
        if layer.kind == "weight"
        and layer.name not in cut_by_dead
        and layer.hooked
        and layer.measured
        and layer.shared_with is None
        and layer.trainable
        and layer.has_grad
        and flow(layer) > 0
        and math.isfinite(flow(layer))
    ]


def group_key(layer: LayerStats) -> str:
    spatial = f"@{'x'.join(map(str, layer.spatial))}" if layer.spatial else ""
    if layer.gated_by is None:
        return layer.role + spatial
    stage = f" of width {layer.gate_width}" if layer.gate_width else ""
    return f"{layer.role}{spatial} (behind gates{stage})"


def dead_cut(probe: ProbeResult, fraction: float = 0.5) -> frozenset[str]:
    """Layers followed by a mostly dead ReLU, whose output gradient is zero because of it.

    A dead ReLU passes exactly zero gradient: that is the dead-units finding, and the
    depth profile must not report it a second time as vanishing.
    """
    dead_after = {a.after for a in probe.activations if a.family == "relu" and a.dead_fraction > fraction}
    return frozenset(
        layer.name for layer in probe.layers if layer.name in dead_after and not layer.act_grad_norm > 0
    )


def depth_groups(
    layers: Iterable[LayerStats], min_layers: int, cut_by_dead: frozenset[str] = frozenset()
) -> list[DepthGroup]:
    """Groups of at least `min_layers` comparable layers, by role (and resolution).

    Never by type across roles: an encoder's attention projections and a decoder's
    feed-forward output are not the same signal at two depths. A role with fewer members
    gives no depth verdict. Layers behind gates are grouped apart from open ones.
    """
    groups: dict[str, list[LayerStats]] = {}
    for layer in comparable(layers, cut_by_dead):
        groups.setdefault(group_key(layer), []).append(layer)
    return [
        DepthGroup(key=key, layers=tuple(sorted(members, key=lambda s: s.index)))
        for key, members in groups.items()
        if len(members) >= min_layers
    ]


def orders(ratio: float) -> float:
    """log10 of a ratio; +inf/-inf for infinite or zero ratios."""
    if ratio <= 0:
        return -math.inf
    if math.isinf(ratio):
        return math.inf
    return math.log10(ratio)


def sig(value: float) -> float:
    """Round to 3 significant digits for evidence (keeps JSON readable, keeps inf/nan)."""
    if not math.isfinite(value) or value == 0:
        return value
    return float(f"{value:.3g}")


def median(values: Iterable[float]) -> float:
    """Median of the finite values (NaN when there are none)."""
    finite = sorted(v for v in values if math.isfinite(v))
    if not finite:
        return math.nan
    mid = len(finite) // 2
    return finite[mid] if len(finite) % 2 else (finite[mid - 1] + finite[mid]) / 2


def feeds_norm(layers: Iterable[LayerStats]) -> set[str]:
    """Weight layers whose next module in forward order is a norm layer (Conv -> BatchNorm).

    Their output is renormalised, so the loss does not change when their weight is scaled
    (scale invariance): a large gradient grows the weight and so shrinks its own effective
    step. An absolute grad/weight ceiling means little for them.
    """
    ordered = sorted((layer for layer in layers if layer.hooked), key=lambda s: s.index)
    return {
        a.name for a, b in zip(ordered, ordered[1:], strict=False) if a.kind == "weight" and b.kind == "norm"
    }


def training_evidence(probe: ProbeResult, layer: str | None) -> dict[str, list[float]]:
    """Under --steps: the loss and `layer`'s gradient norm at each optimizer step."""
    history = probe.training
    if history is None:
        return {}
    out = {"loss_over_steps": [sig(v) for v in history.loss]}
    if layer in history.grad_norms:
        out["grad_norm_over_steps"] = [sig(v) for v in history.grad_norms[layer]]
    return out


def where(ref: SourceRef | None, probe: ProbeResult) -> str | None:
    """file:line of a module's assignment in the user's code; else where the model is defined."""
    if ref is not None:
        return str(ref)
    return str(probe.model.source) if probe.model.source else None


def layer_where(name: str | None, probe: ProbeResult) -> str | None:
    """file:line of the named parameter-owning layer (e.g. the one before an activation)."""
    found = next((layer for layer in probe.layers if layer.name == name), None)
    return where(found.source if found else None, probe)
