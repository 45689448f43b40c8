"""The --steps stage: the optimizer chosen (the user's, a checkpoint's state, or --optimizer), then
gradcheck's loop (training.py) or the user's own train_step() (user_loop.py) on the prepared
batches in turn; returns the TrainingHistory for the pipeline to pass on."""

from __future__ import annotations

from typing import Any

import torch

from gradcheck_cli.measure import training
from gradcheck_cli.measure.optimizers import ChosenOptimizer, choose_optimizer
from gradcheck_cli.measure.passes import Prepared, counted, forward, loss_of
from gradcheck_cli.measure.training import StepRecords
from gradcheck_cli.records.stats import TrainingHistory


def train_steps(prepared: Prepared, optimizer_state: Any = None) -> TrainingHistory:
    """--steps: the user's optimizer (or --optimizer; `optimizer_state` from --weights), clipping and
    float16 scaling as configured, or the user's own train_step()."""
    config, model, loaded = prepared.config, prepared.model, prepared.loaded
    chosen = choose_optimizer(
        model, loaded.optimizer_hook, optimizer_state, config.optimizer, config.lr, loaded.scheduler_hook
    )
    if loaded.train_step is not None:  # the user's own step: their zero_grad, clipping, scheduler
        records, loop = _user_loop(prepared, chosen), "train_step() in the model file"
    else:
        records, loop = _gradcheck_loop(prepared, chosen), "gradcheck's loop"
    owners = training.owners_of(model)
    return training.history(chosen, owners, records, config.clip, config.steps, loop)


def _gradcheck_loop(prepared: Prepared, chosen: ChosenOptimizer) -> StepRecords:
    config = prepared.config
    # float16 trains as a script would: with a GradScaler (a pass-through for other dtypes).
    scaler = torch.amp.GradScaler(prepared.device.split(":")[0], enabled=config.dtype == "float16")
    steps = counted(prepared, "training: step", range(config.steps), config.steps)

    def step_loss(step: int) -> torch.Tensor:
        next(steps, None)
        index = step % len(prepared.batches)
        batch = prepared.batches[index]
        return loss_of(prepared, batch, forward(prepared, batch), index).value

    return training.train(prepared.model, chosen, step_loss, config.steps, config.clip, scaler)


def _user_loop(prepared: Prepared, chosen: ChosenOptimizer) -> StepRecords:
    from gradcheck_cli.measure.user_loop import train_user_step, user_batch

    config, train_step = prepared.config, prepared.loaded.train_step
    assert train_step is not None
    steps = counted(prepared, "training: step", range(config.steps), config.steps)

    def batch_of(step: int) -> Any:
        next(steps, None)
        return user_batch(prepared.batches[step % len(prepared.batches)])

    return train_user_step(prepared.model, chosen, train_step, batch_of, config.steps)
