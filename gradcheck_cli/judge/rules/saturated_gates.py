"""saturated-gates: LSTM/GRU gates stuck in the flat tails of their sigmoid/tanh."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import AppliesWhen, rule
from gradcheck_cli.judge.rules.profile import sig
from gradcheck_cli.records.findings import Finding, LayerStatus, Severity, Suggestion
from gradcheck_cli.records.stats import ProbeResult


@dataclass(frozen=True, slots=True)
class CellGateLimits:
    fraction: float = 0.5
    """Warn when more than this fraction of a gate's values (all steps, units, samples) is saturated."""


@rule(
    id="saturated-gates",
    severity=Severity.WARNING,
    fixes=("lr", "clip", "layernorm"),
    limits=CellGateLimits,
    applies_when=AppliesWhen(lambda r: bool(r.gate_saturation), "no nn.LSTM or nn.GRU in the model"),
)
def saturated_gates(probe: ProbeResult, limits: CellGateLimits) -> Iterator[Finding]:
    """Gates of an nn.LSTM/nn.GRU that sit in the flat tails of their sigmoid or tanh.

    ## What it detects
    For every `nn.LSTM` and `nn.GRU`, the gate values on the first batch are recomputed from
    the module's own weights (the fused kernel does not expose them), step by step and layer
    by layer, and each gate's fraction of values in a flat tail is measured: a sigmoid below
    0.0127 or above 0.9873, a tanh beyond ±0.975 (local derivative under 5% of its maximum).
    Under `--versus` the reference state's fractions are shown beside them.

    ## Why it matters
    A saturated gate passes almost no gradient to the weights that drive it, so it stops
    learning: a forget gate stuck at 0 erases the memory every step, an input gate stuck at
    0 writes nothing. Trained recurrent models get there through large updates.

    ## Evidence
    `module`, `gates` (saturated gate names), `saturated_fraction` per gate, `at_reference`
    (per gate, with `--versus`, else null), `threshold`.

    ## Thresholds
    `fraction` = 0.5: most of a gate's values in a flat tail. A freshly initialised LSTM or
    GRU has almost none there; the LSTM trained here (`benchmarks/trained_states.py`) has
    0% at a healthy learning rate and 96% at a too-high one.

    ## Fixes
    lr: lower the learning rate; the updates that pushed the gate pre-activations out were too large.
    clip: clip the gradient norm (standard for recurrent models).
    layernorm: a layer-normalised LSTM/GRU cell keeps gate pre-activations in range.

    ## Example
    An LSTM whose weights grew tenfold in training fires (`tests/test_trained_rules.py`); the
    same LSTM as built does not.
    """
    reference = (
        {(g.module, g.gate): g.saturated_fraction[1] for g in probe.versus.gates} if probe.versus else {}
    )
    for module in probe.gate_saturation:
        stuck = {gate: value for gate, value in module.gates.items() if value > limits.fraction}
        if not stuck:
            continue
        worst = max(stuck, key=stuck.__getitem__)
        yield Finding(
            id="saturated-gates",
            severity=Severity.WARNING,
            layers=(module.module,),
            status=LayerStatus.SATURATED,
            message=(
                f"{module.module} ({module.type}): the {', '.join(stuck)} gate{'s' if len(stuck) > 1 else ''} "
                f"sit in a flat tail ({worst}: {stuck[worst]:.0%} of its values), so the weights behind them barely learn."
            ),
            evidence={
                "module": module.module,
                "gates": list(stuck),
                "saturated_fraction": [sig(v) for v in stuck.values()],
                "at_reference": [sig(reference[(module.module, g)]) for g in stuck] if reference else None,
                "threshold": limits.fraction,
            },
            suggestions=(
                Suggestion(fix="lr", text="lower the learning rate"),
                Suggestion(fix="clip", text="clip the gradient norm (clip_grad_norm_, e.g. max_norm=1)"),
                Suggestion(
                    fix="layernorm",
                    text=f"layer-normalise the gate pre-activations of {module.module} (a LayerNorm LSTM cell)",
                ),
            ),
        )
