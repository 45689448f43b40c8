"""The report every renderer reads, and the exit code it implies."""

from __future__ import annotations

from dataclasses import dataclass

from gradcheck_cli import __version__
from gradcheck_cli.records.comparison import BaselineComparison
from gradcheck_cli.records.findings import FailOn, Finding, Ignored, LayerStatus, Severity
from gradcheck_cli.records.fixes import TriedFix
from gradcheck_cli.records.headroom import LrHeadroom
from gradcheck_cli.records.precision import PrecisionHeadroom
from gradcheck_cli.records.stats import (
    ActivationStats,
    AttentionStats,
    CellGateSaturation,
    LayerStats,
    ModelInfo,
    ProbeResult,
    RunInfo,
    ThroughTime,
    TrainingHistory,
)
from gradcheck_cli.records.trained import CheckpointInfo, Versus

SCHEMA = "gradcheck.report/1"


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerRow:
    stats: LayerStats
    status: LayerStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    status: str
    """healthy, warning or error: the worst finding."""
    errors: int
    warnings: int
    infos: int
    ignored: int = 0
    """Findings the policy suppressed (listed in Report.ignored)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    target: str
    model: ModelInfo
    run: RunInfo
    layers: tuple[LayerRow, ...]
    findings: tuple[Finding, ...]
    summary: Summary
    activations: tuple[ActivationStats, ...] = ()
    through_time: tuple[ThroughTime, ...] = ()
    training: TrainingHistory | None = None
    """--steps: the loss and each layer's gradient norm at every step."""
    fixes: tuple[TriedFix, ...] | None = None
    """--try-fixes: each fix tried on a copy of the model (None when not asked for)."""
    baseline: BaselineComparison | None = None
    """--baseline: this run compared with the saved report."""
    checkpoint: CheckpointInfo | None = None
    """--weights: the checkpoint loaded and how its keys were mapped."""
    versus: Versus | None = None
    """--versus: the reference state measured with the same batches, layer by layer."""
    attention: tuple[AttentionStats, ...] = ()
    """Attention entropy, collapse and largest logit per site (first batch)."""
    gate_saturation: tuple[CellGateSaturation, ...] = ()
    """Gate saturation of each nn.LSTM/nn.GRU (first batch)."""
    precision: PrecisionHeadroom | None = None
    """--precision: each layer's headroom in each number format asked for."""
    lr_headroom: LrHeadroom | None = None
    """--lr-headroom: the runs at each learning-rate multiplier and the smallest that broke."""
    ignored: tuple[Ignored, ...] = ()
    """Findings suppressed by `rules: off`, `ignore:`, --select/--ignore or an inline comment."""
    schema: str = SCHEMA
    tool_version: str = __version__


def summarize(findings: tuple[Finding, ...], ignored: int = 0) -> Summary:
    counts = {s: sum(1 for f in findings if f.severity is s) for s in Severity}
    if counts[Severity.ERROR]:
        status = "error"
    elif counts[Severity.WARNING]:
        status = "warning"
    else:
        status = "healthy"
    return Summary(
        status=status,
        errors=counts[Severity.ERROR],
        warnings=counts[Severity.WARNING],
        infos=counts[Severity.INFO],
        ignored=ignored,
    )


def build_report(
    target: str,
    probe: ProbeResult,
    findings: tuple[Finding, ...],
    layer_status: dict[str, LayerStatus],
) -> Report:
    rows = tuple(
        LayerRow(stats=layer, status=layer_status.get(layer.name, LayerStatus.OK)) for layer in probe.layers
    )
    return Report(
        target=target,
        model=probe.model,
        run=probe.run,
        layers=rows,
        findings=findings,
        summary=summarize(findings),
        activations=probe.activations,
        through_time=probe.through_time,
        training=probe.training,
        checkpoint=probe.checkpoint,
        versus=probe.versus,
        gate_saturation=probe.gate_saturation,
        attention=probe.attention,
        precision=probe.precision,
        lr_headroom=probe.lr_headroom,
    )


def exit_code(report: Report, fail_on: FailOn | str) -> int:
    """0 when no finding is at or above `fail_on`, else 1. `never` always gives 0."""
    threshold = FailOn(fail_on)
    return 1 if any(threshold.fails(f.severity) for f in report.findings) else 0
