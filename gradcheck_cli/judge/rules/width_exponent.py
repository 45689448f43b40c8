"""width-exponent: `gradcheck scale` found a module whose size changes with width otherwise than
the declared parametrization predicts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import rule
from gradcheck_cli.records.findings import Finding, Severity
from gradcheck_cli.records.stats import ProbeResult


@dataclass(frozen=True, slots=True)
class WidthExponentLimits:
    tolerance: float = 0.25
    """How far outside its expected band a measured exponent may lie."""


@rule(
    id="width-exponent",
    severity=Severity.ERROR,
    fixes=("init", "lr"),
    limits=WidthExponentLimits,
    stage="scale",
)
def width_exponent(probe: ProbeResult, limits: WidthExponentLimits) -> Iterator[Finding]:
    """A module's output, gradient or update scales with width otherwise than the parametrization predicts.

    ## What it detects
    `gradcheck scale TARGET --width KEY=64,128,256,512` builds the model at each width, runs
    t = 1..`--steps` on one fixed batch with the model's own optimizer (or `--optimizer/--lr`)
    and fits, per module, the slope of log RMS against log width of (i) its output at init
    (`forward`), (ii) the loss gradient at its output at init (`backward`), (iii) the change
    of its output after one optimizer step (`update`, t = 2 against t = 1). Each module gets a
    role from how its weight's dimensions change with width (input, hidden, readout, norm,
    attention), and each exponent is compared with the band the declared
    `--parametrization` (standard or mup) predicts for that role: the table, with its
    derivation, is in docs/scaling.md. This finding is made by the `scale` command, not by
    `analyze`.

    ## Why it matters
    An exponent of e means the quantity is 8^e times larger at 8x the width. A hidden
    update exponent of +1 (Adam at one learning rate in standard parametrization) means the
    learning rate tuned on the small model is 8x too large on the big one; a forward
    exponent of +0.5 (a fixed init std of 0.02) means activations grow 2.8x per 8x width.
    The run at the target width diverges, or its best learning rate moves, and the
    cluster-week is spent finding that out.

    ## Evidence
    `role`, `quantity` (forward, backward or update), `measured` (the worst module's
    exponent, mean over seeds), `spread` (its max - min over seeds), `expected` (the band),
    `tolerance`, `parametrization`, `modules` and `exponents` (every module of that role
    outside the band), `cause` (the likely cause). The report's `scale.modules[]` has every
    module's three exponents, their band and status.

    ## Thresholds
    `tolerance` = 0.25: the nearest distinct predictions differ by 0.5 (standard vs muP
    gradients, a scaled vs unscaled readout at init), so the band reaches half way to the
    next one. Exponents vary over seeds by about 0.1 at widths 64..512 (the spread is in the
    report). An exponent above the band is an error (it grows with width), below it a warning
    (it vanishes: features stop learning at large width).

    ## Fixes
    init: initialise weights with std proportional to 1/sqrt(fan_in), not a fixed std.
    lr: scale learning rates per layer as the parametrization says (muP with Adam: hidden
    matrices lr * base_width / fan_in; input weights, biases and the readout keep lr), or
    lower the learning rate as the model grows.

    Under muP the readout needs its 1/width multiplier inside the readout module's forward
    (as mup's MuReadout does): a multiplier applied in the parent's forward is not seen at the
    readout module's output.

    ## Example
    `gradcheck scale 'model.py:make' --width width=64,128,256,512 --optimizer adam` on an
    MLP in standard parametrization: the hidden layers' update exponent is about +1, an error.
    The same model with muP's readout multiplier and per-layer learning rates passes under
    `--parametrization mup` (tests/test_scale.py).
    """
    return
    yield
