"""`width-exponent` findings: one per role, quantity and direction, naming the modules outside their
band, the worst one's measured and expected exponent, and the likely cause. Torch-free."""

from __future__ import annotations

from collections.abc import Sequence

from gradcheck_cli.judge.scale_expectations import NAMES, band_text, outside
from gradcheck_cli.records.findings import Finding, FixId, Severity, Suggestion
from gradcheck_cli.records.scaling import QUANTITIES, ModuleScaling

ADVICE: dict[FixId, str] = {
    "init": "initialise weights with std ~ 1/sqrt(fan_in); under muP put the 1/width multiplier in the "
    "readout's forward, and scale every hidden dimension with the width",
    "lr": "scale learning rates per layer (muP with Adam: hidden matrices lr * base_width / fan_in; "
    "input weights, biases and the multiplied readout keep lr), or lower the learning rate as width grows",
}
WHAT = {
    "forward": "its output at init",
    "backward": "the gradient at its output at init",
    "update": "the change of its output after one step",
}


def findings_for(
    modules: Sequence[ModuleScaling], parametrization: str, tolerance: float
) -> tuple[Finding, ...]:
    groups: dict[tuple[str, str, bool], list[tuple[ModuleScaling, float]]] = {}
    for module in modules:
        for quantity in QUANTITIES:
            value = getattr(module, quantity)
            band = module.expected.get(quantity)
            if value is None or band is None:
                continue
            if (distance := outside(value, band, tolerance)) != 0.0:
                groups.setdefault((module.role, quantity, distance > 0), []).append((module, distance))
    findings = [
        _finding(role, quantity, grows, members, modules, parametrization, tolerance)
        for (role, quantity, grows), members in groups.items()
    ]
    return tuple(
        sorted(findings, key=lambda f: (f.severity.rank * -1, QUANTITIES.index(str(f.evidence["quantity"]))))
    )


def _finding(
    role: str,
    quantity: str,
    grows: bool,
    members: list[tuple[ModuleScaling, float]],
    modules: Sequence[ModuleScaling],
    parametrization: str,
    tolerance: float,
) -> Finding:
    worst, _ = max(members, key=lambda item: abs(item[1]))
    value = getattr(worst, quantity)
    band = worst.expected[quantity]
    cause, fix = likely_cause(worst, quantity, grows, modules, parametrization)
    others = (
        f" and {len(members) - 1} more {role} module{'s' if len(members) > 2 else ''}"
        if len(members) > 1
        else ""
    )
    direction = "grows" if grows else "shrinks"
    message = (
        f"{worst.name} ({role}){others}: {WHAT[quantity]} {direction} like width^{value:+.2f}, "
        f"expected {band_text(band)} under {NAMES[parametrization]}: {cause}"
    )
    return Finding(
        id="width-exponent",
        severity=Severity.ERROR if grows else Severity.WARNING,
        layers=tuple(m.name for m, _ in members),
        message=message,
        evidence={
            "role": role,
            "quantity": quantity,
            "measured": value,
            "spread": worst.spread.get(quantity, 0.0),
            "expected": [b for b in band],
            "tolerance": tolerance,
            "parametrization": parametrization,
            "modules": [m.name for m, _ in members],
            "exponents": [getattr(m, quantity) for m, _ in members],
            "cause": cause,
        },
        suggestions=(Suggestion(fix=fix, text=ADVICE[fix], where=worst.name),),
    )


def likely_cause(
    module: ModuleScaling, quantity: str, grows: bool, modules: Sequence[ModuleScaling], parametrization: str
) -> tuple[str, FixId]:
    """What usually makes this role's quantity scale this way, and the fix id."""
    role, mup = module.role, parametrization == "mup"
    if role == "readout" and _feeds_wider_layers(module, modules):
        return (
            f"its output stays {module.fan_out} wide at every width while later layers grow: a hidden "
            "dimension not scaled with width",
            "init",
        )
    if quantity == "forward":
        if role == "readout" and mup and grows:
            return (
                "the readout is not scaled: no 1/width output multiplier (muP) inside the readout module",
                "init",
            )
        if grows:
            return (
                "the init does not shrink with fan-in: a fixed init std (e.g. 0.02) instead of 1/sqrt(fan_in)",
                "init",
            )
        return "the init shrinks faster than 1/sqrt(fan_in), or a multiplier scales the output down", "init"
    if quantity == "backward":
        if grows:
            return (
                "the gradient reaching it does not shrink as predicted: the readout is not scaled as declared "
                "(muP: a 1/width multiplier)",
                "init",
            )
        return (
            "the gradient reaching it shrinks faster than predicted: the readout is scaled down more than "
            f"{NAMES[parametrization]} says (a 1/width multiplier? declare --parametrization mup)",
            "init",
        )
    return _update_cause(role, grows, mup)


def _update_cause(role: str, grows: bool, mup: bool) -> tuple[str, FixId]:
    if grows and role == "readout":
        return (
            "the readout's step is not scaled: with Adam its multiplier must be 1/width (muP), or its "
            "learning rate must shrink with width",
            "lr",
        )
    if grows:
        return (
            "the learning rate is not scaled per layer: with Adam, hidden matrices need lr ~ 1/fan_in "
            "(muP); one learning rate for every width is too large at the larger ones",
            "lr",
        )
    if mup and role == "input":
        return (
            "its learning rate shrinks with width, but an input layer's should not (muP: Adam lr "
            "constant for input weights and biases): the lr is scaled like a hidden layer's",
            "lr",
        )
    return (
        "its learning rate shrinks faster than the parametrization says (scaled twice?): features "
        "stop learning at large width",
        "lr",
    )


def _feeds_wider_layers(module: ModuleScaling, modules: Sequence[ModuleScaling]) -> bool:
    """A readout-shaped module with an input-shaped one after it: a bottleneck, not the head."""
    names = [m.name for m in modules]
    after = modules[names.index(module.name) + 1 :]
    return any(m.role == "input" and m.fan_in == module.fan_out for m in after)
