"""dead-units: ReLU-like units that never activate."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import has_activation, rule
from gradcheck_cli.judge.rules.profile import layer_where, sig, training_evidence
from gradcheck_cli.judge.rules.profile import where as where_of
from gradcheck_cli.judge.rules.training import RETRAIN, trained_state
from gradcheck_cli.records.findings import Finding, LayerStatus, Severity, Suggestion
from gradcheck_cli.records.stats import ActivationStats, ProbeResult
from gradcheck_cli.records.text import count, verb


@dataclass(frozen=True, slots=True)
class DeadLimits:
    fraction: float = 0.5
    """Warn when more than this fraction of an activation's units never turn on."""
    error_fraction: float = 0.9
    """An error when more than this fraction is dead."""
    min_observations: int = 64
    """Judge a unit only after it was seen on this many values (samples x positions)."""


@rule(
    id="dead-units",
    severity=Severity.ERROR,
    fixes=("leaky-relu", "init", "lr", "batchnorm", "warmup", "clip"),
    limits=DeadLimits,
    applies_when=has_activation("relu", "ReLU-family"),
)
def dead_units(probe: ProbeResult, limits: DeadLimits) -> Iterator[Finding]:
    """A large fraction of ReLU-like units never activate, so their weights get no gradient.

    ## What it detects
    For every ReLU-family activation (ReLU, ReLU6 modules, in-place variants, and calls to
    `F.relu`/`torch.relu`/`x.relu()` made in the model's own code, seen through a
    TorchFunctionMode and named `<layer before it>:F.relu`), the fraction of units (features, or channels for convolutions) that are never positive on
    any sample of any batch.

    ## Why it matters
    A dead unit passes zero gradient, so the weights feeding it never change and it
    cannot come back: capacity is lost, often after a few high-learning-rate steps.

    A unit whose input never varied (exactly 0 behind a closed zero-initialised gate, or a
    constant bias fed by a zero branch) is not observed, so it is not counted as dead: ReLU(0)
    = 0 behind a gate that the first step opens is the design, not a dead unit.

    ## Evidence
    `dead_fraction` per activation, `units`, `activations`, `observations` (values seen per
    unit), `unobserved_fraction`, `min_observations`, `threshold`, `error_threshold`; under
    `--versus`, `dead_at_reference` per activation.

    ## Thresholds
    `fraction` = 0.5 (a warning), `error_fraction` = 0.9. A healthy unit is positive on
    about half of the inputs, so never positive across every sample is a clear signal.
    `min_observations` = 64: a unit positive on a fraction p of its inputs is never seen
    positive in n values with probability (1-p)^n; at n = 64 a unit active on 5% of inputs
    is seen with 96% probability. An MLP or a squeeze-excite ReLU (one pooled value per
    sample) sees one value per sample, so at batch 2-4 most sparse units look dead by chance
    (measured on tests/fixtures/patterns/se_mobilenet.py). When a ReLU saw fewer values and
    the inputs are generated, more batches of the same size are run forward only until it
    has (gradcheck_cli/measure/observe.py); if that is impossible it gets an info line, no verdict.
    The verdict is then the same from batch 2 to 64 (tests/test_patterns.py).

    ## Fixes
    leaky-relu: LeakyReLU or GELU keep a gradient for negative inputs.
    init: He init and a small positive bias keep units alive at the start.
    lr: lower the learning rate; large steps push biases negative.
    batchnorm: normalise before the activation so inputs stay centred.
    warmup: on a trained model, warm the learning rate up so early large gradients take small steps.
    clip: on a trained model, clip the gradient norm so no single step kills units.

    On a trained model (`--weights`, `--steps`, `--versus`) the advice is the recipe's first
    (learning rate, warm-up, clipping: units die from large steps) and the activation swap
    last, marked as a change that needs retraining. Under `--versus` the activations are
    ranked by how much their dead fraction grew since the reference state, not by how dead
    they are: one that went from 2% to 79% leads one at 44% that was already 40%.

    ## Example
    `gradcheck analyze builtin:relu-mlp-bad-init --steps 3 --lr 0.5` kills most units (the
    classic story: a few high-learning-rate steps, and the stack is dead); a ReLU after a
    layer whose bias is pushed negative (`tests/fixtures/faults/dead_module.py`) fires
    without training. `builtin:residual-mlp` is healthy.
    """
    relus = [a for a in probe.activations if a.family == "relu"]
    # observations == 0: not recorded (a hand-built record), judged as before
    few = [a for a in relus if 0 < a.observations < limits.min_observations]
    dead = [a for a in relus if a not in few and a.dead_fraction > limits.fraction]
    if few and any(a.dead_fraction > limits.fraction for a in few):
        yield _too_few(few, limits)
    if not dead:
        return
    worst = max(a.dead_fraction for a in dead)
    severity = Severity.ERROR if worst > limits.error_fraction else Severity.WARNING
    reference = _reference(probe)
    if reference:  # under --versus the largest change since the reference leads, not the deadest
        dead.sort(key=lambda a: -(a.dead_fraction - reference.get(a.name, a.dead_fraction)))
    first = dead[0]
    yield Finding(
        id="dead-units",
        severity=severity,
        layers=tuple(a.after or a.name for a in dead),
        status=LayerStatus.DEAD,
        message=(
            f"{count(len(dead), 'ReLU activation')} {verb('have', len(dead))} most units dead "
            f"({'' if len(dead) == 1 else 'worst '}{worst:.0%} never active), "
            f"{'at' if len(dead) == 1 else ('most newly dead at' if reference else 'starting at')} {first.name} "
            f"({first.type}{f', after {first.after}' if first.after else ''})"
            f"{_since(first, reference, probe)}."
        ),
        evidence={
            "activations": [a.name for a in dead],
            "dead_fraction": [sig(a.dead_fraction) for a in dead],
            "units": [a.units for a in dead],
            "observations": [a.observations for a in dead],
            "unobserved_fraction": [sig(a.unobserved_fraction) for a in dead],
            "min_observations": limits.min_observations,
            "threshold": limits.fraction,
            "error_threshold": limits.error_fraction,
            **(
                {"dead_at_reference": [sig(reference.get(a.name, math.nan)) for a in dead]}
                if reference
                else {}
            ),
            **training_evidence(probe, first.after),
        },
        suggestions=_trained_suggestions(first, probe)
        if trained_state(probe)
        else _build_suggestions(first, probe),
    )


def _build_suggestions(first: ActivationStats, probe: ProbeResult) -> tuple[Suggestion, ...]:
    where = where_of(first.source, probe)
    return (
        Suggestion(
            fix="leaky-relu",
            text=_leaky_text(first.type, first.name),
            where=where,
        ),
        Suggestion(
            fix="init",
            text=f"use He init (kaiming_normal_) and a small positive bias for {first.after or 'the layer before'}",
            where=layer_where(first.after, probe) or where,
        ),
        Suggestion(fix="lr", text="lower the learning rate", where=None),
        Suggestion(
            fix="batchnorm",
            text=f"normalise the input of {first.name} (BatchNorm/LayerNorm)",
            where=where,
        ),
    )


def _reference(probe: ProbeResult) -> dict[str, float]:
    if probe.versus is None:
        return {}
    return {a.name: a.dead_fraction[1] for a in probe.versus.activations if math.isfinite(a.dead_fraction[1])}


def _since(first: ActivationStats, reference: dict[str, float], probe: ProbeResult) -> str:
    if first.name not in reference or probe.versus is None:
        return ""
    return f", {reference[first.name]:.0%} at {probe.versus.reference}"


def _trained_suggestions(first: ActivationStats, probe: ProbeResult) -> tuple[Suggestion, ...]:
    """On a trained model: the recipe first (units die from large steps), the build change last."""
    return (
        Suggestion(
            fix="lr",
            text="lower the learning rate (large updates pushed these units where no input turns them on): "
            "resume from a checkpoint before they died",
        ),
        Suggestion(fix="warmup", text="warm the learning rate up over the first steps (LinearLR)"),
        Suggestion(
            fix="clip", text="clip the gradient norm (clip_grad_norm_) so no single step is that large"
        ),
        Suggestion(
            fix="leaky-relu",
            text=f"{_leaky_text(first.type, first.name)}: {RETRAIN}",
            where=where_of(first.source, probe),
        ),
    )


def _too_few(few: list[ActivationStats], limits: DeadLimits) -> Finding:
    return Finding(
        id="dead-units",
        severity=Severity.INFO,
        layers=(),
        message=(
            f"{count(len(few), 'ReLU activation')} {'was' if len(few) == 1 else 'were'} seen on too few values per unit "
            f"to tell dead units from sparse ones (fewest {min(a.observations for a in few)}, "
            f"need {limits.min_observations}): run with a larger batch or more batches."
        ),
        evidence={
            "activations": [a.name for a in few],
            "observations": [a.observations for a in few],
            "dead_fraction": [sig(a.dead_fraction) for a in few],
            "min_observations": limits.min_observations,
            "threshold": limits.min_observations,
        },
    )


def _leaky_text(kind: str, name: str) -> str:
    if "." in kind:  # a functional call: F.relu, torch.relu, Tensor.relu
        return f"replace {kind}(...) at {name} with F.leaky_relu(..., 0.01) or F.gelu(...)"
    return f"replace nn.{kind} at {name} with nn.LeakyReLU(0.01) or nn.GELU()"
