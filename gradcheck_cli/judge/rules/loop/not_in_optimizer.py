"""not-in-optimizer: a layer gets a gradient but is in none of the optimizer's param groups."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import rule
from gradcheck_cli.judge.rules.loop.common import grad_norm, span, watched
from gradcheck_cli.records.findings import Finding, Severity, Suggestion
from gradcheck_cli.records.stats import ProbeResult


@dataclass(frozen=True, slots=True)
class NotInOptimizerLimits:
    min_points: float = 2
    """Measured steps with a loop record needed (the first has no weights to compare with)."""


@rule(
    id="not-in-optimizer",
    severity=Severity.ERROR,
    fixes=("optimizer",),
    limits=NotInOptimizerLimits,
    needs_history=True,
)
def not_in_optimizer(probe: ProbeResult, limits: NotInOptimizerLimits) -> Iterator[Finding]:
    """A layer gets a gradient but never changes: its parameters are in no optimizer param group.

    ## What it detects
    From the monitor's loop record (`GradientMonitor(model, optimizer=opt)`, the Lightning and
    Trainer callbacks): layers whose trainable parameters are in none of the optimizer's param
    groups, that got a non-zero gradient, and whose weights were bitwise the same at every
    measured step after the first (a layer updated some other way, by a second optimizer or
    by hand, changes and is not reported). Needs `min_points` measured steps.

    ## Why it matters
    The loss curve shows nothing: the rest of the model learns around the layer, which stays
    at its initial values. Its gradient, never applied and often never zeroed, piles up in
    `.grad`; a monitor that sees only gradients reports a growing gradient, not the cause.
    It happens when an optimizer is built from a list of submodules' parameters that misses
    one, or before a layer is added to the model.

    ## Evidence
    `layers`, `step` (the first measured step it was seen outside every group), `steps`
    (measured steps seen), `grad_norm` (of the first layer, latest step), `weights_unchanged`
    (true: bitwise the same over the measured steps), `optimizer`, `groups`.

    ## Thresholds
    `min_points` = 2 measured steps with a loop record.

    ## Fixes
    optimizer: build the optimizer from `model.parameters()` or add the missing parameters
    (`optimizer.add_param_group({"params": layer.parameters()})`).

    ## Example
    `tests/test_monitor_loop.py`: an MLP whose optimizer is built from its first and last
    layers only; the middle layer is reported, its weights bitwise those at init (checked
    with torch.equal).
    """
    steps = watched(probe.history)
    if len(steps) < limits.min_points:
        return
    last = steps[-1].loop
    assert last is not None
    out = [
        name
        for name, layer in last.layers.items()
        if layer.group is None and _never_changed(steps, name) and grad_norm(steps[-1], name) > 0
    ]
    if not out:
        return
    seen = [s for s in steps if (lp := s.loop) and out[0] in lp.layers and lp.layers[out[0]].group is None]
    yield Finding(
        id="not-in-optimizer",
        severity=Severity.ERROR,
        layers=tuple(out),
        message=(
            f"{', '.join(out)} {'gets' if len(out) == 1 else 'get'} a gradient but "
            f"{'is' if len(out) == 1 else 'are'} in none of the {last.optimizer} param groups: the "
            f"weights did not change over {span(seen)}."
        ),
        evidence={
            "layers": out,
            "step": seen[0].step,
            "steps": len(seen),
            "grad_norm": grad_norm(steps[-1], out[0]),
            "weights_unchanged": True,
            "optimizer": last.optimizer,
            "groups": len(last.lrs),
        },
        suggestions=(
            Suggestion(
                fix="optimizer",
                text=f"give the optimizer {out[0]}'s parameters (build it from model.parameters())",
                where=out[0],
            ),
        ),
    )


def _never_changed(steps: list, name: str) -> bool:
    changes = [lp.layers[name].weight_changed for s in steps if (lp := s.loop) and name in lp.layers]
    known = [c for c in changes if c is not None]
    return bool(known) and not any(known)
