"""Run every registered rule over a ProbeResult and assign each layer its status."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gradcheck_cli.judge.rules import all_rules, get_rule, trend_rules
from gradcheck_cli.records.errors import ConfigError
from gradcheck_cli.records.findings import Finding, LayerStatus
from gradcheck_cli.records.stats import LayerStats, ProbeResult

# When several findings mark one layer, the most fundamental one names its status.
STATUS_PRIORITY = (
    LayerStatus.NONFINITE,
    LayerStatus.NO_GRAD,
    LayerStatus.EXPLODING,
    LayerStatus.VANISHING,
    LayerStatus.DEAD,
    LayerStatus.SATURATED,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Diagnosis:
    findings: tuple[Finding, ...]
    layer_status: dict[str, LayerStatus]


def check_threshold_ids(thresholds: Mapping[str, Mapping[str, float]]) -> None:
    from gradcheck_cli.records.hints import did_you_mean

    for rule_id in thresholds:
        if get_rule(rule_id) is None:
            known = [r.id for r in all_rules()]
            raise ConfigError(f"thresholds: unknown finding id {rule_id!r}", did_you_mean(rule_id, known))


def diagnose(probe: ProbeResult, thresholds: Mapping[str, Mapping[str, float]] | None = None) -> Diagnosis:
    thresholds = thresholds or {}
    check_threshold_ids(thresholds)
    findings: list[Finding] = []
    # the trend rules need a run: a monitor's history, or --steps (training-stalled reads it)
    trained = probe.history is not None or probe.training is not None
    rules = ([] if scaler_skipped(probe) else all_rules()) + (trend_rules() if trained else [])
    for spec in rules:
        limits = spec.limits(thresholds.get(spec.id))
        findings.extend(spec.check(probe, limits))
    findings.sort(key=lambda f: -f.severity.rank)
    return Diagnosis(findings=tuple(findings), layer_status=layer_status(probe.layers, findings))


def scaler_skipped(probe: ProbeResult) -> bool:
    """The monitor's current step is one a GradScaler skips (the scaled gradients hold inf/NaN,
    the loss is finite): it throws these gradients away and halves its scale, so the single-step
    rules do not judge them; the loop rules judge the skips (grad-scaler-skips)."""
    if probe.history is None or not probe.history.steps:
        return False
    last = probe.history.steps[-1]
    loss_ok = last.loss is None or math.isfinite(last.loss)
    return last.loop is not None and last.loop.scaler_skipped and loss_ok


def layer_status(layers: Sequence[LayerStats], findings: Sequence[Finding]) -> dict[str, LayerStatus]:
    """Each layer's status: frozen when not trainable, else the worst status a finding marks it
    with, else what was measured (gated, not measured); layers not named are ok. The one status
    function: diagnosis and the policy (after it drops findings) both ask it."""
    status = {layer.name: LayerStatus.FROZEN for layer in layers if not layer.trainable}
    marks: dict[str, set[LayerStatus]] = {}
    for finding in findings:
        if finding.status is None:
            continue
        for name in finding.layers:
            marks.setdefault(name, set()).add(finding.status)
    for name, found in marks.items():
        if name in status:
            continue
        status[name] = next(s for s in STATUS_PRIORITY if s in found)
    for layer in layers:  # measured facts, for layers no finding marked
        if layer.name not in status and layer.gated_by is not None:
            status[layer.name] = LayerStatus.GATED
        elif layer.name not in status and not layer.measured:
            status[layer.name] = LayerStatus.NOT_MEASURED
    return status
