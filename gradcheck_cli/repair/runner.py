"""Try each error finding's suggested fixes on deep copies of the model and measure again."""

from __future__ import annotations

from typing import Protocol

from torch import nn

from gradcheck_cli.judge.rules.profile import depth_groups
from gradcheck_cli.records.findings import Finding, Severity, Suggestion
from gradcheck_cli.records.fixes import Measured, TriedFix
from gradcheck_cli.records.stats import ProbeResult
from gradcheck_cli.repair import activation, normalization, recurrent, reinit, residual
from gradcheck_cli.repair.base import NotApplicable, RepairContext, Transform, count_parameters
from gradcheck_cli.repair.clip import clip_note

TRANSFORMS: dict[str, Transform] = {
    "gru": recurrent.to_gru,
    "lstm": recurrent.to_lstm,
    "activation": activation.to_relu,
    "leaky-relu": activation.to_leaky_relu,
    "batchnorm": normalization.add_batchnorm,
    "layernorm": normalization.add_layernorm,
    "residual": residual.add_skips,
    "init": reinit.unit_gain_init,
}
THROUGH_TIME = ("vanishing-through-time", "exploding-through-time")
DEPTH = ("vanishing-gradients", "exploding-gradients")
MIN_GROUP = 3


class Measurer(Protocol):
    def fresh_copy(self) -> nn.Module: ...
    def run_forward(self, model: nn.Module) -> object: ...
    def run_backward(self, model: nn.Module) -> None: ...
    def measure(self, model: nn.Module) -> tuple[ProbeResult, tuple[Finding, ...]]: ...


def try_fixes(findings: tuple[Finding, ...], before: ProbeResult, measurer: Measurer) -> tuple[TriedFix, ...]:
    """Each distinct fix suggested by an error finding, tried once, in the order suggested."""
    tried: list[TriedFix] = []
    seen: set[str] = set()
    for finding in (f for f in findings if f.severity is Severity.ERROR):
        for suggestion in finding.suggestions:
            if suggestion.fix not in seen:
                seen.add(suggestion.fix)
                tried.append(try_one(finding, suggestion, findings, before, measurer))
    return tuple(tried)


def try_one(
    finding: Finding,
    suggestion: Suggestion,
    findings: tuple[Finding, ...],
    before: ProbeResult,
    measurer: Measurer,
) -> TriedFix:
    measured_before = Measured(findings=finding_ids(findings), ratio=ratio_of(finding, before))
    base = TriedFix(
        fix=suggestion.fix,
        where=suggestion.where,
        applied=False,
        note="",
        before=measured_before,
        after=None,
        finding=finding.id,
    )
    if suggestion.fix == "clip":
        note, max_norm = clip_note(before)
        return _with(base, note=note, max_norm=max_norm)
    transform = TRANSFORMS.get(suggestion.fix)
    if transform is None:
        return _with(base, note=f"no automatic transform for {suggestion.fix!r}; by hand: {suggestion.text}")
    context = RepairContext(
        run_forward=measurer.run_forward,
        run_backward=measurer.run_backward,
        before=before,
        finding=finding,
    )
    try:
        change = transform(measurer.fresh_copy(), context)
    except NotApplicable as exc:
        return _with(base, note=f"not applied: {exc}; by hand: {suggestion.text}")
    except Exception as exc:  # a user model can break a transform in any way; the report must survive
        return _with(base, note=f"not applied: {_describe(exc)}; by hand: {suggestion.text}")
    try:
        result, after_findings = measurer.measure(change.model)
    except Exception as exc:
        return _with(base, note=f"{change.note}, but the changed model failed to run: {_describe(exc)}")
    after = Measured(findings=finding_ids(after_findings), ratio=ratio_of(finding, result))
    return TriedFix(
        fix=suggestion.fix,
        where=suggestion.where or change.where,
        applied=True,
        note=f"{change.note} (in {change.where})",
        before=measured_before,
        after=after,
        cleared=tuple(i for i in measured_before.findings if i not in after.findings),
        parameters_delta=count_parameters(change.model) - before.model.parameters,
        finding=finding.id,
    )


def _with(base: TriedFix, note: str, max_norm: float | None = None) -> TriedFix:
    return TriedFix(
        fix=base.fix,
        where=base.where,
        applied=False,
        note=note,
        before=base.before,
        after=None,
        finding=base.finding,
        max_norm=max_norm,
    )


def finding_ids(findings: tuple[Finding, ...]) -> tuple[str, ...]:
    """Ids of the error and warning findings, each once, in report order."""
    ids = [f.id for f in findings if f.severity in (Severity.ERROR, Severity.WARNING)]
    return tuple(dict.fromkeys(ids))


def ratio_of(finding: Finding, probe: ProbeResult) -> float | None:
    """The finding's headline ratio, measured the same way on any model.

    Depth findings: first-to-last output-gradient norm of the depth group the finding
    compared (or, when a fix renamed its layers, the largest group). Through-time findings:
    the gradient reaching the first step relative to the last.
    """
    if finding.id in THROUGH_TIME:
        module = finding.layers[0] if finding.layers else None
        series = [t for t in probe.through_time if t.module == module] or list(probe.through_time)
        return series[0].curve[0] if series and series[0].curve else None
    if finding.id in DEPTH:
        groups = depth_groups(probe.layers, MIN_GROUP)
        if not groups:
            return None
        key = finding.evidence.get("group")
        same = [g for g in groups if g.key == key]
        group = same[0] if same else max(groups, key=lambda g: len(g.layers))
        return group.first_to_last
    return None


def _describe(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0][:160] if lines else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
