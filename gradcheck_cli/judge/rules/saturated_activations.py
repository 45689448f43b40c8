"""saturated-activations: sigmoid/tanh units sitting in their flat tails."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import has_activation, rule
from gradcheck_cli.judge.rules.profile import layer_where, sig
from gradcheck_cli.judge.rules.profile import where as where_of
from gradcheck_cli.records.findings import Finding, LayerStatus, Severity, Suggestion
from gradcheck_cli.records.stats import ActivationStats, ProbeResult
from gradcheck_cli.records.text import count, verb


@dataclass(frozen=True, slots=True)
class SaturatedLimits:
    fraction: float = 0.5
    """Warn when more than this fraction of outputs sit in the flat tails."""
    error_fraction: float = 0.9
    error_attenuation: float = 0.1
    """An error when the saturated activations together pass at most this share of the gradient."""


@rule(
    id="saturated-activations",
    severity=Severity.WARNING,
    fixes=("batchnorm", "layernorm", "init", "activation"),
    limits=SaturatedLimits,
    applies_when=has_activation("sigmoid", "sigmoid or tanh"),
)
def saturated_activations(probe: ProbeResult, limits: SaturatedLimits) -> Iterator[Finding]:
    """Sigmoid/tanh units sit in their flat tails, where their derivative is near zero.

    ## What it detects
    For every Sigmoid/Tanh (and Hardtanh-like) module, and every `torch.sigmoid`,
    `torch.tanh`, `F.sigmoid`, `x.tanh()` call made in the model's own code, the fraction of outputs whose local
    derivative is below 5% of its maximum: sigmoid outputs under 0.0127 or over 0.987,
    tanh outputs beyond +/-0.975.

    ## Why it matters
    Saturated units pass almost no gradient and learn slowly or not at all. Saturation is
    not a kind of vanishing: large weights can keep the gradient's magnitude while the
    units still learn badly, so it is measured on its own.

    ## Evidence
    `saturated_fraction` per activation, `activations`, `threshold`, `error_threshold`,
    `mean_gain` per activation (its mean local derivative relative to the maximum: the share
    of the gradient it passes), `attenuation` (their product over the saturated activations),
    `error_attenuation`, `coverage` (saturated / all sigmoid-tanh activations).

    ## Thresholds
    `fraction` = 0.5 (a warning). Severity follows the measured effect, not one layer's
    fraction: an error when one activation passes 90% (`error_fraction`), or when the
    saturated activations together pass at most a tenth of the gradient they would pass at
    their linear point (`error_attenuation` = 0.1, 20 dB), the product of their mean relative
    derivatives. Algebra: a sigmoid whose inputs sit 85% in the tails passes about
    0.15 x 0.5 ~ 0.08 of the gradient (an error: the first layer of a regressor fed raw,
    unstandardised features, tests/fixtures/patterns/sigmoid_regressor.py); one layer 55-60%
    in the tails passes ~0.3 (a warning); every layer of a tanh stack 60-80% in the tails
    multiplies ~0.3 per layer (an error, tests/fixtures/patterns/tanh_saturated_stack.py).

    ## Fixes
    batchnorm / layernorm: normalise the pre-activations so they stay in the linear range.
    init: smaller initial weights (Xavier) keep pre-activations near zero.
    activation: use ReLU/GELU, which have no flat positive tail.

    An output head (a sigmoid/tanh after the model's last trainable layer) is only ever an
    `info`: its tails are its predictions (a sparse heatmap is ~97% confident background),
    nothing trainable after it can be starved, and under a likelihood loss (BCE) the gradient
    at its logits is p - y, which the tails do not shrink. A head stuck on the wrong side
    shows as a small gradient at the last layer, which the gradient rules judge
    (tests/fixtures/corpus/heatmap_head.py: a trained heatmap head 95% in the tails is
    healthy; its twin with a saturated hidden layer is not).

    ## Example
    A tanh/sigmoid MLP whose weights are initialised with std 3 saturates most units
    (`tests/fixtures/faults/saturated.py`); `builtin:tanh-mlp` at default init does not.
    """
    tails = [
        a
        for a in probe.activations
        if a.family in ("sigmoid", "tanh") and a.saturated_fraction > limits.fraction
    ]
    heads = output_heads(probe, tails)
    hot = [a for a in tails if a not in heads]
    if heads:
        yield _head_finding(heads, probe)
    if not hot:
        return
    worst = max(a.saturated_fraction for a in hot)
    gains = [a.mean_gain for a in hot if math.isfinite(a.mean_gain)]
    attenuation = math.prod(gains) if gains else math.nan
    severe = worst > limits.error_fraction or attenuation <= limits.error_attenuation
    squashing = [a for a in probe.activations if a.family in ("sigmoid", "tanh")]
    first = hot[0]
    yield Finding(
        id="saturated-activations",
        severity=Severity.ERROR if severe else Severity.WARNING,
        layers=tuple(a.after or a.name for a in hot),
        status=LayerStatus.SATURATED,
        message=(
            f"{count(len(hot), 'sigmoid/tanh activation')} {verb('are', len(hot))} saturated, "
            f"{'at' if len(hot) == 1 else 'starting at'} {first.name} ({first.type}): "
            f"{'' if len(hot) == 1 else 'worst '}{worst:.0%} of outputs in the flat tails, where "
            f"{'it passes' if len(hot) == 1 else 'they pass'} almost no gradient"
            + (f" ({_share(attenuation)} of it gets through)." if math.isfinite(attenuation) else ".")
        ),
        evidence={
            "activations": [a.name for a in hot],
            "saturated_fraction": [sig(a.saturated_fraction) for a in hot],
            "threshold": limits.fraction,
            "error_threshold": limits.error_fraction,
            "mean_gain": [sig(a.mean_gain) for a in hot],
            "attenuation": sig(attenuation),
            "error_attenuation": limits.error_attenuation,
            "coverage": sig(len(hot) / len(squashing)),
        },
        suggestions=_suggestions(first, probe),
    )


def _suggestions(first: ActivationStats, probe: ProbeResult) -> tuple[Suggestion, ...]:
    where = where_of(first.source, probe)
    return (
        Suggestion(
            fix="layernorm",
            text=f"normalise the input of {first.name} (LayerNorm/BatchNorm)",
            where=where,
        ),
        Suggestion(
            fix="init",
            text=f"initialise {first.after or 'the preceding layer'} smaller (Xavier: nn.init.xavier_uniform_)",
            where=layer_where(first.after, probe) or where,
        ),
        Suggestion(fix="activation", text=f"replace {first.type} with ReLU or GELU", where=where),
        Suggestion(
            fix="batchnorm",
            text=f"in a convolutional model, a BatchNorm before {first.name}",
            where=where,
        ),
    )


def _share(attenuation: float) -> str:
    return f"{attenuation:.0%}" if attenuation >= 0.01 else f"{attenuation:.1e}"


def output_heads(probe: ProbeResult, saturated: list[ActivationStats]) -> list[ActivationStats]:
    """The saturated activations that produce the model's output: after its last trainable layer
    (in forward order), with no other activation after them."""
    trainable = [s for s in probe.layers if s.trainable]
    if not trainable or not saturated:
        return []
    last = max(trainable, key=lambda s: s.index).name
    after_last = [a for a in probe.activations if a.after == last]
    return [a for a in saturated if a.after == last and len(after_last) == 1]


def _head_finding(heads: list[ActivationStats], probe: ProbeResult) -> Finding:
    head = heads[0]
    return Finding(
        id="saturated-activations",
        severity=Severity.INFO,
        layers=tuple(a.after or a.name for a in heads),
        message=(
            f"the output head {head.name} ({head.type}) has {head.saturated_fraction:.0%} of its "
            "outputs in the flat tails: confident predictions, not a blocked path (no trainable "
            "layer follows it, and with a likelihood loss such as BCE the gradient at its input is "
            "p - y)."
        ),
        evidence={
            "activations": [a.name for a in heads],
            "saturated_fraction": [sig(a.saturated_fraction) for a in heads],
            "output_head": True,
        },
    )
