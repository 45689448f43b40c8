"""Gates that never open: a zero-initialised parameter whose own gradient is zero too.

Not a rule of its own: `vanishing-gradients` reports it (the layers behind the gate never
get a gradient), with this message and evidence. See gradcheck_cli/measure/zero_gains.py.
"""

from __future__ import annotations

from gradcheck_cli.judge.rules.profile import layer_where, sig
from gradcheck_cli.records.findings import Finding, LayerStatus, Severity, Suggestion
from gradcheck_cli.records.stats import ProbeResult, ZeroGainStats


def stuck_gates_finding(stuck: list[ZeroGainStats], probe: ProbeResult) -> Finding:
    first = stuck[0]
    behind = tuple(name for gate in stuck for name in gate.layers)
    where = layer_where(first.module, probe)
    others = f" and {len(stuck) - 1} more like it" if len(stuck) > 1 else ""
    return Finding(
        id="vanishing-gradients",
        severity=Severity.ERROR,
        layers=behind,
        status=LayerStatus.VANISHING,
        message=(
            f"{first.name} starts at zero and its own gradient is zero too{others}: the path through "
            f"it never opens, so the {len(behind)} layers behind it ({behind[0]} ...) never learn. "
            "A zero-initialised gain needs a non-zero weight in front of it."
        ),
        evidence={
            "stuck_gates": [gate.name for gate in stuck],
            "gate_value": [sig(gate.value) for gate in stuck],
            "gate_grad_norm": [sig(gate.grad_norm) for gate in stuck],
            "layers_behind": list(behind),
            "threshold": 0.0,
        },
        suggestions=(
            Suggestion(
                fix="init",
                text=(
                    f"initialise one of the two zero parameters normally: keep {first.name} at 0 "
                    "and give the layer in front of it its default (He/Xavier) init"
                ),
                where=where,
            ),
        ),
    )
