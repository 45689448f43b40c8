"""`gradcheck report run.jsonl`: read a monitor's JSON lines, judge the whole run, pick the exit code.

Torch-free: the file is JSON, the trend rules are plain arithmetic, so a run measured on a
cluster can be inspected on a laptop without torch installed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradcheck_cli.judge.diagnose import check_threshold_ids
from gradcheck_cli.judge.rules import get_rule, trend_rules
from gradcheck_cli.judge.rules.trends.series import LogFit, judged_fit
from gradcheck_cli.records.findings import FailOn, Finding
from gradcheck_cli.records.history import History, RunLog, read_run
from gradcheck_cli.records.stats import ModelInfo, ProbeResult, RunInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class RunReport:
    log: RunLog
    trends: tuple[Finding, ...]
    """The trend rules over every step in the file (the monitor judged only its window)."""
    fits: Mapping[str, LogFit | None]
    """Each layer's log10 gradient-norm slope over the whole file, for the tables: None where the
    evidence is too thin (see `abstained`)."""
    abstained: Mapping[str, str] = field(default_factory=dict)
    """Layer -> why no slope is shown (non-finite, too few steps, noise)."""

    @property
    def history(self) -> History:
        return self.log.history

    def severities(self) -> list[str]:
        """The severity of every trend finding and of every finding the monitor logged."""
        return [f.severity.value for f in self.trends] + [str(d.get("severity")) for _, d in self.log.logged]


def build_run_report(path: Path, thresholds: Mapping[str, Mapping[str, float]] | None = None) -> RunReport:
    thresholds = thresholds or {}
    check_threshold_ids(thresholds)
    log = read_run(path)
    limits = get_rule("gradient-trend").limits(thresholds.get("gradient-trend"))  # type: ignore[union-attr]
    fits, abstained = _fits(log.history, int(limits.min_points), limits.min_r2)
    return RunReport(log=log, trends=judge_history(log.history, thresholds), fits=fits, abstained=abstained)


def judge_history(
    history: History, thresholds: Mapping[str, Mapping[str, Any]] | None = None
) -> tuple[Finding, ...]:
    """Only the trend rules, over a history alone (no single-step measurement to judge)."""
    thresholds = thresholds or {}
    probe = ProbeResult(
        model=ModelInfo(class_name="", parameters=0, trainable=0, device="", dtype=""),
        run=RunInfo(batches=0, steps=0, seed=0, loss=""),
        layers=(),
        history=history,
    )
    found: list[Finding] = []
    for spec in trend_rules():
        found.extend(spec.check(probe, spec.limits(thresholds.get(spec.id))))
    return tuple(sorted(found, key=lambda f: -f.severity.rank))


def _fits(
    history: History, min_points: int, min_r2: float
) -> tuple[dict[str, LogFit | None], dict[str, str]]:
    steps = history.step_numbers
    fits: dict[str, LogFit | None] = {}
    abstained: dict[str, str] = {}
    for name in history.layer_names():
        values, bad = history.layer_series(name, "grad_norm"), history.layer_series(name, "nonfinite")
        fits[name], why = judged_fit(steps, values, bad, min_points, min_r2)
        if why:
            abstained[name] = why
    return fits, abstained


def unit_rows(report: RunReport) -> list[tuple[str, str, str, Sequence[float]]]:
    """(activation, after, measure, series): dead fraction for ReLUs, saturated fraction otherwise."""
    rows: list[tuple[str, str, str, Sequence[float]]] = []
    for name in report.history.unit_names():
        unit = report.history.unit(name)
        if unit is None:
            continue
        measure = "dead_fraction" if unit.family == "relu" else "saturated_fraction"
        rows.append((name, unit.after or "", measure, report.history.unit_series(name, measure)))
    return rows


def loss_series(report: RunReport) -> list[float]:
    return [math.nan if s.loss is None else s.loss for s in report.history.steps]


def run_exit_code(report: RunReport, fail_on: FailOn | str) -> int:
    """As analyze: 1 when a finding (trend or logged) is at or above `fail_on`, else 0."""
    threshold = FailOn(fail_on)
    return 1 if any(threshold.fails(severity) for severity in report.severities()) else 0
