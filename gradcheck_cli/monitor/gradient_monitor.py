"""GradientMonitor: per-layer gradient statistics and findings from inside a user's training loop.

The probe's hooks are attached only for the steps that are measured: after the step() that
precedes a measured step, so that the next forward registers the output-gradient hooks, and
removed again in the step() that collects. Between measured steps the model runs bare. The
hooks only read gradients (they return None), so training is unchanged.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from gradcheck_cli.measure import distributed
from gradcheck_cli.measure.layer_kinds import has_normalization
from gradcheck_cli.measure.probe import GradientProbe
from gradcheck_cli.monitor.loop_watch import LoopWatch
from gradcheck_cli.monitor.sinks import Sink
from gradcheck_cli.monitor.sinks.jsonl import JsonLinesSink
from gradcheck_cli.monitor.step_stats import model_info, step_stats
from gradcheck_cli.records.findings import Finding
from gradcheck_cli.records.history import History, StepStats
from gradcheck_cli.records.series_book import SeriesBook
from gradcheck_cli.records.stats import ModelInfo, ProbeResult, RunInfo, SourceRef

if TYPE_CHECKING:
    from gradcheck_cli.records.report import Report

FindingsCallback = Callable[[int, tuple[Finding, ...]], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorRecord:
    """One measured training step."""

    step: int
    """0-based count of step() calls before this one."""
    report: Report
    """The per-layer statistics of this step and the findings the rules drew from them."""
    new_findings: tuple[Finding, ...]
    """Findings whose id the previous measured step did not have."""
    stats: StepStats
    """The step's numbers as the trend rules and the sinks see them."""


def warn_on_stderr(step: int, findings: tuple[Finding, ...]) -> None:
    """The default callback: one rich warning line per new finding."""
    from rich.console import Console

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    colour = {"error": "red", "warning": "yellow", "info": "cyan"}
    for f in findings:
        style = colour.get(f.severity.value, "yellow")
        console.print(
            f"[{style}]gradcheck[/] step {step}: [{style}]{f.severity.value}[/] {f.id}: {f.message}"
        )


class GradientMonitor:
    """`monitor = GradientMonitor(model, every=100)`; call `monitor.step()` after each `loss.backward()`.

    Pass `optimizer=` (and `scaler=` for a torch.amp.GradScaler, `scheduler=` for the learning-rate
    scheduler), or call `monitor.watch(optimizer, ...)`, and the monitor also records what the loop
    did: each layer's optimizer group, the learning rates, whether `.grad` was zeroed, the scaler's
    skipped steps. Gradients are then read unscaled, and a scaler's normal skipped steps are not
    taken for NaN/inf events.
    """

    def __init__(
        self,
        model: nn.Module,
        every: int = 100,
        *,
        callback: FindingsCallback | None = warn_on_stderr,
        jsonl: str | Path | None = None,
        history: int = 100,
        thresholds: Mapping[str, Mapping[str, float]] | None = None,
        sinks: Sequence[Sink] = (),
        trend_history: int = 1000,
        optimizer: torch.optim.Optimizer | None = None,
        scaler: Any = None,
        scheduler: Any = None,
    ) -> None:
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        self.model = distributed.unwrap(model)
        self.every = every
        self.callback = callback
        self.thresholds = dict(thresholds or {})
        if self.thresholds:  # the rule registry is imported at the first measured step otherwise
            from gradcheck_cli.judge.diagnose import check_threshold_ids

            check_threshold_ids(self.thresholds)
        self.history: deque[MonitorRecord] = deque(maxlen=history)
        self.trend: deque[StepStats] = deque(maxlen=trend_history)
        """The numbers of the last `trend_history` measured steps: what the trend rules judge."""
        self._book = SeriesBook(keep=trend_history + 1)
        """The trend's steps as columns, for the trend rules (records/series_book.py)."""
        self.steps = 0
        self._sources: dict[str, SourceRef] | None = None
        """Each module's line in the user's code, found at the first measured step."""
        self._has_norm = has_normalization(self.model)
        self._probe: GradientProbe | None = None
        self._closed = False
        self._resume_armed = False
        self._info: ModelInfo | None = None
        self.sinks: list[Sink] = list(sinks) if distributed.is_reporting_rank() else []
        if jsonl is not None and distributed.is_reporting_rank():
            self.sinks.append(JsonLinesSink(jsonl))
        self._loop: LoopWatch | None = None
        self._arm()
        if optimizer is not None:  # after _arm(): the loop is watched from the first step on
            self.watch(optimizer, scaler=scaler, scheduler=scheduler)

    def watch(self, optimizer: torch.optim.Optimizer, *, scaler: Any = None, scheduler: Any = None) -> None:
        """Record the loop around this optimizer from the next measured step on (see the class doc)."""
        if self._loop is not None:
            self._loop.close()
        self._loop = LoopWatch(self.model, optimizer, scaler, scheduler)
        if self._probe is not None:
            self._loop.arm(first=self.steps == 0)

    # -- the training-loop interface -----------------------------------------------------------
    def step(self, loss: torch.Tensor | float | None = None) -> tuple[Finding, ...]:
        """Call after loss.backward(). On a measured step returns its findings, else ()."""
        findings: tuple[Finding, ...] = ()
        if self._loop is not None:
            self._loop.call(self.steps)
        if self._probe is not None:
            findings = self._measure(loss).report.findings
        self.steps += 1
        if self.steps % self.every == 0 and not self._closed:
            self._arm()
            if self._loop is not None:
                self._loop.arm(first=False)
        return findings

    def pause(self) -> None:
        """Detach the hooks until resume(): forward passes that are not training steps (evaluation)
        then run bare and do not count towards the next measured step."""
        self._resume_armed = self._resume_armed or self._probe is not None
        self._disarm()

    def resume(self) -> None:
        """Re-attach the hooks pause() removed, if the next step is a measured one."""
        if self._resume_armed and not self._closed:
            self._arm()
        self._resume_armed = False

    @property
    def measuring(self) -> bool:
        """The hooks are attached: the step now running (its next step() call) is a measured one."""
        return self._probe is not None

    @property
    def last(self) -> MonitorRecord | None:
        return self.history[-1] if self.history else None

    def close(self) -> None:
        """Remove every hook and close the sinks (the JSON-lines file). The model is left as it was."""
        if self._closed:
            return
        self._closed = True
        self._disarm()
        if self._loop is not None:
            self._loop.close()
        for sink in self.sinks:
            sink.close()

    def __enter__(self) -> GradientMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- attaching and detaching the probe -----------------------------------------------------
    def _arm(self) -> None:
        if self._probe is not None:
            return
        # train=False: the user's train/eval modes stand while the hooks are attached
        self._probe = GradientProbe(self.model, self._sources).attach(train=False)

    def _disarm(self) -> None:
        if self._probe is None:
            return
        self._probe.detach()
        self._probe = None

    # -- one measured step -----------------------------------------------------------------------
    def _measure(self, loss: torch.Tensor | float | None) -> MonitorRecord:
        assert self._probe is not None
        started = time.perf_counter()
        # the judging half, imported when first needed: attaching the monitor stays cheap
        from gradcheck_cli.judge.diagnose import diagnose
        from gradcheck_cli.records.report import build_report

        if self._sources is None:
            from gradcheck_cli.load.source import locate_modules

            self._sources = locate_modules(self.model)
        self._probe.sources = self._sources
        scale = self._loop.unscale() if self._loop is not None else 1.0
        try:
            self._probe.collect(scale)
            distributed.combine_step(self._probe)
            layers, activations = self._probe.layer_stats(), self._probe.activation_stats()
        finally:
            if self.every == 1 and not self._closed:
                self._probe.reset()  # the next step is measured too: keep the hooks attached
            else:
                self._disarm()
        self._info = self._info or model_info(self.model)
        loss_value = _loss_value(loss)
        stats = step_stats(self.steps, layers, activations, None if loss is None else loss_value)
        if self._loop is not None:
            nonfinite = any(s.nonfinite for s in layers)
            stats = dataclasses.replace(stats, loop=self._loop.point(self.steps, nonfinite, scale))
            self._loop.disarm()
        self._book.append(stats)
        result = ProbeResult(
            model=self._info,
            run=RunInfo(batches=1, steps=self.steps, seed=0, loss="training loop", inputs=("training",)),
            layers=layers,
            activations=activations,
            has_normalization=self._has_norm,
            loss_value=loss_value,
            history=History(steps=(*self.trend, stats), book=self._book, book_end=self._book.count),
        )
        diagnosis = diagnose(result, self.thresholds)
        report = build_report(type(self.model).__name__, result, diagnosis.findings, diagnosis.layer_status)
        stats = dataclasses.replace(stats, seconds=time.perf_counter() - started)
        self.trend.append(stats)
        record = MonitorRecord(
            step=self.steps, report=report, new_findings=self._new(report.findings), stats=stats
        )
        self.history.append(record)
        self._publish(record)
        return record

    def _new(self, findings: tuple[Finding, ...]) -> tuple[Finding, ...]:
        # A finding is news when its id was absent from the previous measured step: a persistent
        # problem warns once, not every step, and warns again if it comes back.
        before = {f.id for f in self.last.report.findings} if self.last else set()
        return tuple(f for f in findings if f.id not in before)

    def _publish(self, record: MonitorRecord) -> None:
        if not distributed.is_reporting_rank():
            return
        stats = record.stats
        if any(getattr(sink, "needs_document", False) for sink in self.sinks):
            from gradcheck_cli.render.json import to_document

            stats = dataclasses.replace(stats, document=to_document(record.report))
        for sink in self.sinks:
            sink.write(record.step, stats, record.report.findings)
        if self.callback is not None and record.new_findings:
            self.callback(record.step, record.new_findings)


def _loss_value(loss: torch.Tensor | float | None) -> float:
    if loss is None:
        return float("nan")
    if isinstance(loss, torch.Tensor):
        value = loss.detach()
        if distributed.active():
            value = value.float().reshape(1).clone()
            distributed.reduce_sum(value)
            value /= distributed.world_size()
        return float(value)
    return float(loss)
