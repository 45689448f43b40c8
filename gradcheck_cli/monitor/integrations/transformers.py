"""Hugging Face Trainer: `Trainer(..., callbacks=[GradcheckCallback(every=100)])` (`pip install gradcheck-cli[transformers]`).

Where it measures. The Trainer clips gradients (`max_grad_norm`, 1.0 by default) before its
only gradient-time callback, `on_pre_optimizer_step`; clipping rescales every layer by one
factor and, once any gradient is NaN, makes all of them NaN. So the callback measures at the
end of the backward pass instead, before clipping: a forward hook on the model takes the
loss the model returns (a dict or ModelOutput with "loss", a tuple whose first element is a
scalar, or a scalar tensor), and a hook on that loss queues the measurement for when backward
has finished. With gradient accumulation it measures after the last micro-batch of each
optimizer step. If the model returns no loss (the Trainer computes it from logits), it falls
back to `on_pre_optimizer_step`, where gradients are already clipped. On the steps that are
not measured the forward hook returns at once and `on_pre_optimizer_step` only counts them.
Tested with transformers 5.24 (the extra requires >= 5; `on_pre_optimizer_step` exists there).

The Trainer's optimizer and scheduler are watched (the monitor's loop record: param groups,
learning rates, zero_grad). Evaluation runs with the hooks detached. Statistics go to the sinks you pass and, by default,
to TensorBoard (`<output_dir>/runs/gradcheck`, or $TENSORBOARD_LOGGING_DIR) and W&B when the
Trainer's `report_to` names them; new findings go to transformers' logging.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.utils import logging as hf_logging

from gradcheck_cli.measure.compat import queue_after_backward
from gradcheck_cli.monitor.integrations.common import (
    GradcheckFindingError,
    check_options,
    failing,
    log_findings,
)
from gradcheck_cli.monitor.sinks import Sink

log = hf_logging.get_logger("transformers.gradcheck")

__all__ = ["GradcheckCallback", "GradcheckFindingError"]


class GradcheckCallback(TrainerCallback):
    """Measure gradients every `every` optimizer steps; stop or raise on findings at `fail_on`.

    `fail_on` ("error", "warning", "info"; None: only report) with `action="stop"` sets
    `control.should_training_stop`, or with `action="raise"` raises GradcheckFindingError.
    `jsonl=PATH` writes the monitor's JSON lines for `gradcheck report`; `sinks` adds others;
    `report_to_trainer_loggers=False` skips the TensorBoard/W&B sinks taken from `report_to`.
    """

    def __init__(
        self,
        every: int = 100,
        *,
        fail_on: str | None = None,
        action: str = "stop",
        jsonl: str | Path | None = None,
        sinks: Sequence[Sink] = (),
        report_to_trainer_loggers: bool = True,
        thresholds: Mapping[str, Mapping[str, float]] | None = None,
        history: int = 100,
    ) -> None:
        check_options(every, fail_on, action)
        self.every, self.fail_on, self.action = every, fail_on, action
        self.jsonl, self.sinks, self.use_report_to = jsonl, tuple(sinks), report_to_trainer_loggers
        self.thresholds, self.history = thresholds, history
        self.monitor: Any = None
        self._loss_hook: Any = None
        self._loss: torch.Tensor | None = None
        self._accumulation = 1
        self._backwards = 0
        self._measured = False
        self._stop = False

    # -- Trainer events ----------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        from gradcheck_cli.monitor.gradient_monitor import GradientMonitor

        self._accumulation = max(1, int(args.gradient_accumulation_steps))
        self.monitor = GradientMonitor(
            model,
            every=self.every,
            callback=lambda step, findings: log_findings(log, step, findings),
            jsonl=self.jsonl,
            history=self.history,
            thresholds=self.thresholds,
            sinks=[*self.sinks, *(_report_to_sinks(args) if self.use_report_to else [])],
        )
        self._loss_hook = model.register_forward_hook(self._on_forward)
        optimizer = kwargs.get("optimizer")
        if optimizer is not None:  # accelerate wraps it; the hooks go on the torch optimizer inside
            inner = getattr(optimizer, "optimizer", optimizer)
            self.monitor.watch(inner, scheduler=kwargs.get("lr_scheduler"))

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._backwards, self._measured = 0, False
        if self.monitor is not None:
            self.monitor.resume()

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.monitor is not None and not self._measured:
            # an unmeasured step is counted here; a measured one is measured here only when the
            # model returned no loss (the gradients are then after clipping)
            self._measure()
        if self._stop:
            control.should_training_stop = True

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.monitor is not None and control.should_evaluate:
            self.monitor.pause()  # evaluation forwards are not training steps

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._loss_hook is not None:
            self._loss_hook.remove()
            self._loss_hook = None
        if self.monitor is not None:
            self.monitor.close()

    # -- the end of each backward pass ---------------------------------------------------------
    def _on_forward(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        if self.monitor is None or not self.monitor.measuring:
            return  # an unmeasured step: on_pre_optimizer_step only counts it
        loss = _loss_of(output)
        if loss is None or not loss.requires_grad or not module.training:
            return
        self._loss = loss.detach()
        loss.register_hook(self._on_backward_start)

    def _on_backward_start(self, grad: torch.Tensor) -> None:
        queue_after_backward(self._after_backward)

    def _after_backward(self) -> None:
        self._backwards += 1
        if self._backwards == self._accumulation and not self._measured:
            self._measure()

    def _measure(self) -> None:
        self._measured = True
        step = self.monitor.steps
        findings = self.monitor.step(self._loss)
        self._loss = None
        bad = failing(findings, self.fail_on)
        if bad and self.action == "raise":
            raise GradcheckFindingError(step, bad)
        self._stop = self._stop or bool(bad)


def _loss_of(output: Any) -> torch.Tensor | None:
    """The loss a model's forward returned, if it returned one."""
    if isinstance(output, torch.Tensor):
        return output if output.dim() == 0 else None
    if isinstance(output, Mapping):
        loss = output.get("loss")
        return loss if isinstance(loss, torch.Tensor) and loss.dim() == 0 else None
    if isinstance(output, (tuple, list)) and output:
        return _loss_of(output[0])
    return None


def _report_to_sinks(args: Any) -> list[Sink]:
    """TensorBoard and W&B sinks for the backends the Trainer reports to."""
    report_to = args.report_to if isinstance(args.report_to, (list, tuple)) else [args.report_to]
    sinks: list[Sink] = []
    if "tensorboard" in report_to or "all" in report_to:
        from gradcheck_cli.monitor.sinks.tensorboard import TensorBoardSink

        log_dir = os.environ.get("TENSORBOARD_LOGGING_DIR") or os.path.join(
            args.output_dir, "runs", "gradcheck"
        )
        sinks.append(TensorBoardSink(log_dir=log_dir))
    if "wandb" in report_to or "all" in report_to:
        import wandb

        if wandb.run is not None:  # the Trainer's WandbCallback started it in on_train_begin
            from gradcheck_cli.monitor.sinks.wandb import WandbSink

            sinks.append(WandbSink(wandb.run))
    return sinks
