"""attention-collapse: attention that puts nearly all its weight on one key (logit growth, entropy collapse)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import AppliesWhen, rule
from gradcheck_cli.judge.rules.profile import sig
from gradcheck_cli.records.findings import Finding, Severity, Suggestion
from gradcheck_cli.records.stats import AttentionStats, ProbeResult
from gradcheck_cli.records.text import count


@dataclass(frozen=True, slots=True)
class AttentionLimits:
    collapsed: float = 0.5
    """Warn when more than this fraction of queries put over 99% of their attention on one key."""
    max_logit: float = 50.0
    """Warn when an attention logit exceeds this in magnitude (softmax is one-hot beyond ~20)."""


@rule(
    id="attention-collapse",
    severity=Severity.WARNING,
    fixes=("lr", "layernorm", "clip"),
    limits=AttentionLimits,
    applies_when=AppliesWhen(
        lambda r: bool(r.attention), "no attention (MultiheadAttention, scaled_dot_product_attention)"
    ),
)
def attention_collapse(probe: ProbeResult, limits: AttentionLimits) -> Iterator[Finding]:
    """Attention logits that grew until the softmax is one-hot: entropy collapse.

    ## What it detects
    At each `nn.MultiheadAttention` and each `F.scaled_dot_product_attention` call, the
    attention probabilities on the first batch are recomputed from the inputs the call
    received (the module's own q/k projections, the same masks and scale). It fires where
    most queries put more than 99% of their weight on a single key, or where a logit
    exceeds `max_logit` in magnitude.

    ## Why it matters
    A one-hot softmax has a near-zero Jacobian: the query and key projections behind it
    stop getting gradient, and training of that layer stalls or becomes unstable (the
    attention-logit growth seen in large-learning-rate transformer runs).

    ## Evidence
    `sites`, `collapsed_fraction`, `entropy` (mean over queries, 1 = uniform over the keys
    a query may see, 0 = one-hot), `max_logit` per site, `entropy_at_reference` (with
    `--versus`, else null), `threshold`, `logit_threshold`.

    ## Thresholds
    `collapsed` = 0.5 (most queries one-hot), `max_logit` = 50. A freshly initialised
    transformer has entropies near 0.95 and logits of a few units; the attention model
    trained here (`benchmarks/trained_states.py`, 300 steps) ends at entropy 0.74 and 1%
    collapsed queries when healthy, 0.02 and 93% at a too-high learning rate.

    ## Fixes
    lr: lower the learning rate; logits grow with the q/k weight norms.
    layernorm: normalise queries and keys (QK-norm) before the dot product.
    clip: clip the gradient norm so single steps cannot inflate the q/k weights.

    ## Example
    A transformer block whose query/key projections grew 20-fold in training fires
    (`tests/test_trained_rules.py`); the same block as built does not.
    """
    bad = [
        a
        for a in probe.attention
        if a.collapsed_fraction > limits.collapsed
        or (math.isfinite(a.max_logit) and a.max_logit > limits.max_logit)
    ]
    if not bad:
        return
    first = bad[0]
    yield Finding(
        id="attention-collapse",
        severity=Severity.WARNING,
        layers=tuple(a.name.split(":")[0] for a in bad),
        message=(
            f"Attention collapsed at {count(len(bad), 'site')}: at {first.name} {first.collapsed_fraction:.0%} of "
            f"the queries put over 99% on one key (entropy {first.entropy:.2f} of 1, largest logit {first.max_logit:.3g})."
        ),
        evidence={
            "sites": [a.name for a in bad],
            "collapsed_fraction": [sig(a.collapsed_fraction) for a in bad],
            "entropy": [sig(a.entropy) for a in bad],
            "max_logit": [sig(a.max_logit) for a in bad],
            "entropy_at_reference": _at_reference(probe, bad),
            "threshold": limits.collapsed,
            "logit_threshold": limits.max_logit,
        },
        suggestions=(
            Suggestion(
                fix="lr", text="lower the learning rate: attention logits grow with the q/k weight norms"
            ),
            Suggestion(
                fix="layernorm",
                text=f"normalise queries and keys before the dot product at {first.name} (QK-norm)",
            ),
            Suggestion(fix="clip", text="clip the gradient norm (clip_grad_norm_)"),
        ),
    )


def _at_reference(probe: ProbeResult, bad: list[AttentionStats]) -> list[float | None] | None:
    if probe.versus is None:
        return None
    earlier = {a.name: a.entropy[1] for a in probe.versus.attention}
    return [sig(earlier[a.name]) if a.name in earlier else None for a in bad]
