"""weight-norm-change: a layer's weight norm grew or shrank by a large factor since the reference state."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import REFERENCE_STATE, rule
from gradcheck_cli.judge.rules.profile import sig
from gradcheck_cli.records.findings import Finding, Severity, Suggestion
from gradcheck_cli.records.stats import ProbeResult
from gradcheck_cli.records.text import count


@dataclass(frozen=True, slots=True)
class WeightNormLimits:
    growth: float = 5.0
    """Warn when a weight layer's norm is more than this many times its reference norm."""
    decay: float = 0.2
    """Warn when it is less than this fraction of its reference norm."""


@rule(
    id="weight-norm-change",
    severity=Severity.WARNING,
    fixes=("lr", "weight-decay", "clip"),
    limits=WeightNormLimits,
    applies_when=REFERENCE_STATE,
)
def weight_norm_change(probe: ProbeResult, limits: WeightNormLimits) -> Iterator[Finding]:
    """Weight norms that grew or decayed by a large factor relative to init (or another checkpoint).

    ## What it detects
    Under `--versus`, each weight layer's (Linear/Conv/recurrent/embedding) parameter norm in
    this state divided by its norm in the reference state, measured on the same model.

    ## Why it matters
    Healthy training moves weight norms by tens of percent, rarely by more than 2-3x.
    Growth by 5x or more means updates too large for the layer (the precursor of
    divergence, and of saturated or dead units); decay to a fifth or less means weight decay
    stronger than the gradient signal, so the layer is being erased.

    ## Evidence
    `grown` and `decayed` (layer names), `ratio` per layer (this state / reference),
    `reference`, `growth_threshold`, `decay_threshold`.

    ## Thresholds
    `growth` = 5, `decay` = 0.2. Calibrated on models trained here for 300 steps
    (`benchmarks/trained_states.py`): healthy runs of the MLP, CNN, LSTM and attention model
    end within 1.0x-2.5x of their init norms; at a too-high learning rate the MLP reaches
    17x, the LSTM 31x and the attention model 36x (the CNN only 3.5x: there `update-ratio`
    and `units-died-in-training` fire instead).
    The output layer growing alone is not a finding: a classifier's head must scale its
    logits until they separate the classes, and under cross-entropy its norm keeps growing
    (logarithmically, without bound on separable data: Soudry et al., 2018) in healthy
    training; trained heads here reach 5-11x their init norm (PyTorch's default init gives a
    C-class head a norm of only sqrt(C/3)). A learning rate too high inflates the hidden
    layers' updates as well, so the head is listed, and warned about, only together with a
    hidden layer past the limit (`tests/test_training_corpus.py`: a head at 5x+ alone is
    healthy; the same head with fc1 grown by a too-high rate is warned).

    ## Fixes
    lr: lower the learning rate when norms grow.
    weight-decay: add weight decay to hold growing norms, or reduce it when norms decay.
    clip: clip the gradient norm so single large steps cannot inflate the weights.

    ## Example
    The ReLU MLP of `tests/fixtures/trained/relu_mlp.py` trained at lr 3 grows its first
    layer's norm several-fold (`tests/test_versus.py`); trained at lr 0.05 it stays near 1x.
    """
    if probe.versus is None:
        return
    kinds = {layer.name: layer.kind for layer in probe.layers}
    ratios = {
        v.name: v.weight_norm[0] / v.weight_norm[1]
        for v in probe.versus.layers
        if kinds.get(v.name) == "weight" and v.weight_norm[1] > 0 and math.isfinite(v.weight_norm[0])
    }
    grown = [n for n, r in ratios.items() if r > limits.growth]
    decayed = [n for n, r in ratios.items() if r < limits.decay]
    if grown == [output_layer(probe)] and not decayed:
        return  # the head alone scaling its logits: what cross-entropy rewards (see Thresholds)
    if not grown and not decayed:
        return
    reference = probe.versus.reference
    shown = grown + decayed
    worst = max(shown, key=lambda n: abs(math.log(ratios[n])))
    yield Finding(
        id="weight-norm-change",
        severity=Severity.WARNING,
        layers=tuple(shown),
        message=(
            f"{count(len(shown), 'weight layer')} changed norm by a large factor since {reference}: "
            f"{worst} is {ratios[worst]:.3g}x its norm at {reference}."
        ),
        evidence={
            "grown": grown,
            "decayed": decayed,
            "ratio": [sig(ratios[n]) for n in shown],
            "reference": reference,
            "growth_threshold": limits.growth,
            "decay_threshold": limits.decay,
        },
        suggestions=_suggestions(
            sorted(grown, key=ratios.__getitem__, reverse=True), sorted(decayed, key=ratios.__getitem__)
        ),
    )


def _suggestions(grown: list[str], decayed: list[str]) -> tuple[Suggestion, ...]:
    out = []
    if grown:
        out.append(Suggestion(fix="lr", text=f"lower the learning rate ({grown[0]} grew the most)"))
        out.append(
            Suggestion(
                fix="weight-decay", text="add weight decay (AdamW weight_decay=0.01) to hold the norms"
            )
        )
        out.append(
            Suggestion(
                fix="clip", text="clip the gradient norm (clip_grad_norm_) so no single step inflates them"
            )
        )
    if decayed:
        out.append(
            Suggestion(fix="weight-decay", text=f"reduce weight decay: {decayed[0]} is shrinking toward zero")
        )
    return tuple(out)


def output_layer(probe: ProbeResult) -> str | None:
    """The last trainable layer in forward order (the model's head), or None."""
    trainable = [s for s in probe.layers if s.trainable]
    return max(trainable, key=lambda s: s.index).name if trainable else None
