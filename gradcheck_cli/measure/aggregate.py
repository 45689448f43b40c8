"""From raw sums to LayerStats: pure arithmetic, torch-free.

The probe records, per layer and per batch, a `BatchSums` (sums of squares and element
counts); processes add those up by field name (distributed.py); `layer_stats` turns one
layer's sums into its statistics (medians over batches, ratios, fractions).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields

from gradcheck_cli.records.measures import Measures
from gradcheck_cli.records.stats import LayerStats, SourceRef


@dataclass(slots=True)
class BatchSums:
    """One layer's raw sums over one batch: what every process adds up, field by field."""

    act_sq: float = math.nan
    """Sum of squared output-gradient norms (NaN: no output gradient was seen)."""
    act_numel: float = 0.0
    """Elements of the outputs whose gradient was measured."""
    grad_sq: float = math.nan
    """Sum of squared parameter-gradient norms."""
    zero_count: float = 0.0
    """Parameter-gradient elements exactly zero."""
    grad_numel: float = 0.0
    """Parameter-gradient elements (of the parameters that got a gradient)."""
    nonfinite: float = 0.0
    """1 per non-finite sum above (parameter and output gradient)."""
    has_grad: float = 0.0
    """1 when any parameter of the layer got a gradient."""
    missed: float = 0.0
    """1 when output-gradient hooks were set but none fired while the parameters got a gradient:
    the output gradient was not measured (never read as 0)."""


SUM_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(BatchSums))
"""The names processes merge by (distributed.py): never positions."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerRecord:
    """What the probe knows about one hooked layer besides its sums (no tensors, no modules)."""

    name: str
    type: str
    parameters: int
    trainable: bool
    shared_with: str | None
    owns_parameters: bool
    calls: int
    """Forward calls over the whole run (all forwards)."""
    hooked: bool
    width: int
    spatial: tuple[int, ...]
    kind: str
    source: SourceRef | None
    features: int = 0
    init_scale: float = math.nan


def layer_stats(
    record: LayerRecord,
    sums: list[BatchSums],
    index: int,
    weight_norm: float,
    forwards: int,
    measures: Measures = Measures(),
) -> LayerStats:
    rows = sums or [BatchSums()]
    act_norms = [math.sqrt(r.act_sq) if r.act_numel and not r.missed else math.nan for r in rows]
    act_rms = [math.sqrt(r.act_sq / r.act_numel) if r.act_numel and not r.missed else math.nan for r in rows]
    grad_norms = [math.sqrt(r.grad_sq) for r in rows]
    zero = sum(r.zero_count for r in rows) / max(1.0, sum(r.grad_numel for r in rows))
    has_grad = any(r.has_grad for r in rows)
    grad_norm = median(grad_norms) if has_grad else math.nan
    return LayerStats(
        name=record.name,
        type=record.type,
        index=index,
        parameters=record.parameters,
        trainable=record.trainable or (record.shared_with is not None and not record.owns_parameters),
        grad_norm=grad_norm,
        weight_norm=weight_norm,
        grad_weight_ratio=grad_norm / weight_norm if weight_norm > 0 else math.nan,
        act_grad_rms=median(act_rms),
        act_grad_norm=median(act_norms),
        zero_grad_fraction=zero,
        nonfinite=int(sum(r.nonfinite for r in rows)),
        calls=max(1, round(record.calls / max(1, forwards))) if record.calls else 0,
        width=record.width,
        spatial=record.spatial,
        role=role_of(record.name),
        kind=record.kind,
        shared_with=record.shared_with,
        has_grad=has_grad or not record.owns_parameters,
        hooked=record.hooked,
        measured=not all(r.missed for r in rows),
        features=record.features,
        init_scale=record.init_scale,
        batch_act_grad_norm=tuple(act_norms),
        source=record.source,
        measures=measures,
    )


_INDEXED = re.compile(r"^(\d+|.*[A-Za-z_](\d+))$")


def role_of(name: str) -> str:
    """The name with block indices replaced by '#': what the layer does, not where it sits.

    Any index-like part counts (`blocks.3`, `layer_3`, `block3`, `encoder_layer_11`, `h.0`,
    `fc7`): its digits become '#', so `encoder_layer_#` and `decoder_layer_#` stay apart. The
    layer's own last part is kept as it is when an earlier part is already an index: inside a
    repeated block it names a position (`blocks.#.mlp.0` and `blocks.#.mlp.3` are two different
    Linears, `layer#.#.conv1` and `layer#.#.conv2` two different convolutions), while in a plain
    stack (`features.7`, `fc7`) it is the depth index itself.
    """
    parts = name.split(".")
    indexed = [bool(_INDEXED.match(part)) for part in parts]
    out = []
    for i, part in enumerate(parts):
        keep = i == len(parts) - 1 and any(indexed[:i])
        out.append(part if keep or not indexed[i] else re.sub(r"\d+$", "#", part))
    return ".".join(out)


def median(values: list[float]) -> float:
    finite = sorted(v for v in values if not math.isnan(v))
    if not finite:
        return math.nan
    mid = len(finite) // 2
    return finite[mid] if len(finite) % 2 else (finite[mid - 1] + finite[mid]) / 2
