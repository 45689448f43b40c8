"""Enough observations per ReLU unit before a unit is called dead.

A unit is dead when it is never positive; with few observations a healthy but sparse unit
is never positive by chance. A unit positive on a fraction p of its inputs is missed by n
observations with probability (1 - p)^n: with n = 64, a unit active on 5% of inputs is seen
with 96% probability. Convolutions and sequence layers observe each unit at every position,
so a batch of 2 is plenty; an MLP or a squeeze-excite ReLU (one pooled value per sample)
sees one value per sample. When some ReLU saw fewer than MIN_OBSERVATIONS values per unit
and the inputs are generated, more batches of the same size are run forward only (no
backward; parameters and BatchNorm statistics restored) and the ReLU statistics are taken
over all of them. The activation's `observations` field says how many values were seen.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from gradcheck_cli.measure.functional import FunctionalActivations
from gradcheck_cli.measure.probe import GradientProbe
from gradcheck_cli.measure.zero_gains import model_kept
from gradcheck_cli.records.stats import ActivationStats

MIN_OBSERVATIONS = 64
MAX_EXTRA_BATCHES = 64


def needed_samples(activations: Sequence[ActivationStats], samples: int) -> int:
    """Samples still needed so that every ReLU saw MIN_OBSERVATIONS values per unit (0: enough)."""
    short = [a for a in activations if a.family == "relu" and a.units and a.observations < MIN_OBSERVATIONS]
    if not short or samples <= 0:
        return 0
    per_sample = min(a.observations for a in short) / samples
    return max(0, math.ceil(MIN_OBSERVATIONS / max(per_sample, 1e-9)) - samples)


def top_up(
    model: nn.Module,
    activations: tuple[ActivationStats, ...],
    batches: Sequence[Any],
    more: Callable[[int], list[Any]],
    run_forward: Callable[[Any], object],
    batch_size: int,
) -> tuple[ActivationStats, ...]:
    """The ReLU statistics over `batches` plus enough extra batches from `more(count)` (as they
    were when nothing was needed or no more inputs can be made)."""
    need = needed_samples(activations, batch_size * len(batches))
    if not need or batch_size <= 0:
        return activations
    extra = more(min(MAX_EXTRA_BATCHES, math.ceil(need / batch_size)))
    if not extra:
        return activations
    with model_kept(model), torch.no_grad(), GradientProbe(model) as probe:
        functional = FunctionalActivations(lambda: probe.last_layer)
        for batch in (*batches, *extra):
            with functional.watch():
                run_forward(batch)
        fresh = {a.name: a for a in (*probe.activation_stats(), *functional.stats())}
    return tuple(fresh.get(a.name, a) if a.family == "relu" else a for a in activations)
