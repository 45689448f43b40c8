"""PyTorch Lightning: `Trainer(callbacks=[GradcheckCallback(every=100)])` (`pip install gradcheck-cli[lightning]`).

The callback drives a GradientMonitor on the LightningModule: the loss comes from
`on_before_backward`, the measurement happens in `on_after_backward` (after DDP has
averaged the gradients, before clipping and the optimizer step). The first optimizer, its
scheduler and the precision plugin's GradScaler are watched (the monitor's loop record:
param groups, learning rates, zero_grad, skipped steps). Validation and the sanity
check run with the hooks detached. Per-layer statistics go to every logger of the trainer
(`log_metrics`, the tag layout of gradcheck_cli.monitor.sinks); new findings go to Lightning's
logging (`lightning.pytorch.callbacks.gradcheck`), from rank 0 only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from gradcheck_cli.monitor.integrations.common import (
    GradcheckFindingError,
    check_options,
    failing,
    log_findings,
)
from gradcheck_cli.monitor.sinks import Sink, scalar_metrics
from gradcheck_cli.records.findings import Finding
from gradcheck_cli.records.history import StepStats

log = logging.getLogger("lightning.pytorch.callbacks.gradcheck")

__all__ = ["GradcheckCallback", "GradcheckFindingError"]


class LoggerSink:
    """Writes each measured step's scalars through the trainer's loggers (TensorBoard, CSV, W&B...)."""

    def __init__(self, trainer: pl.Trainer) -> None:
        self.trainer = trainer

    def write(self, step: int, stats: StepStats, findings: tuple[Finding, ...]) -> None:
        metrics = scalar_metrics(stats, findings)
        for logger in self.trainer.loggers:
            logger.log_metrics(metrics, step=self.trainer.global_step)

    def close(self) -> None:
        """The loggers belong to the trainer."""


class GradcheckCallback(pl.Callback):
    """Measure gradients every `every` optimizer steps; stop or raise on findings at `fail_on`.

    `fail_on` ("error", "warning", "info"; None: only report) with `action="stop"` sets
    `trainer.should_stop` (every rank sees the same combined findings, so all stop together),
    or with `action="raise"` raises GradcheckFindingError. `jsonl=PATH` also writes the monitor's
    JSON lines for `gradcheck report`; `sinks` adds others; `log_statistics=False` keeps the
    per-layer scalars out of the trainer's loggers. `monitor` is the GradientMonitor (history,
    last) once fitting has started.
    """

    def __init__(
        self,
        every: int = 100,
        *,
        fail_on: str | None = None,
        action: str = "stop",
        jsonl: str | Path | None = None,
        sinks: Sequence[Sink] = (),
        log_statistics: bool = True,
        thresholds: Mapping[str, Mapping[str, float]] | None = None,
        history: int = 100,
    ) -> None:
        check_options(every, fail_on, action)
        self.every, self.fail_on, self.action = every, fail_on, action
        self.jsonl, self.sinks, self.log_statistics = jsonl, tuple(sinks), log_statistics
        self.thresholds, self.history = thresholds, history
        self.monitor: Any = None
        self._loss: Any = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from gradcheck_cli.monitor.gradient_monitor import GradientMonitor

        sinks = list(self.sinks)
        if self.log_statistics and trainer.loggers:
            sinks.append(LoggerSink(trainer))
        self.monitor = GradientMonitor(
            pl_module,
            every=self.every,
            callback=lambda step, findings: log_findings(log, step, findings),
            jsonl=self.jsonl,
            history=self.history,
            thresholds=self.thresholds,
            sinks=sinks,
        )

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # the optimizer, its scheduler and the precision plugin's GradScaler: the loop record
        if self.monitor is not None and trainer.optimizers:
            configs = getattr(trainer, "lr_scheduler_configs", None) or []
            self.monitor.watch(
                trainer.optimizers[0],
                scaler=getattr(trainer.precision_plugin, "scaler", None),
                scheduler=configs[0].scheduler if configs else None,
            )

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Any) -> None:
        self._loss = loss.detach()

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.monitor is None:
            return
        step = self.monitor.steps
        findings = self.monitor.step(self._loss)
        self._loss = None
        bad = failing(findings, self.fail_on)
        if not bad:
            return
        if self.action == "raise":
            raise GradcheckFindingError(step, bad)
        trainer.should_stop = True

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.monitor is not None:
            self.monitor.pause()  # validation forwards are not training steps

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.monitor is not None:
            self.monitor.resume()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._close()

    def _close(self) -> None:
        if self.monitor is not None:
            self.monitor.close()
