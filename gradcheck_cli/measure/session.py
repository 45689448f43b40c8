"""The torch collect stage: the live objects of one analysis and the passes run on them.

The pipeline runs these in its order; `repair` runs them again on changed copies of the model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from gradcheck_cli.config.analyze_config import AnalyzeConfig
from gradcheck_cli.load.target import LoadedModel, redirect_stdout_to_stderr
from gradcheck_cli.measure.device import autocast
from gradcheck_cli.measure.forward_error import forward_failure
from gradcheck_cli.measure.inputs import (
    Batch,
    InputPlan,
    reference_input,
    stream,
)
from gradcheck_cli.measure.losses import LossChoice, compute_loss, require_grad
from gradcheck_cli.measure.underflow import measure_fp16_underflow
from gradcheck_cli.records.errors import InputError
from gradcheck_cli.records.stats import (
    Fp16Underflow,
    TrainingHistory,
)
from gradcheck_cli.records.trained import CheckpointInfo


@dataclass(slots=True)
class Session:
    """The live objects of one analysis (torch tier only)."""

    config: AnalyzeConfig
    loaded: LoadedModel
    device: str
    batches: list[Batch]
    plan: InputPlan
    loss: LossChoice | None = None
    loss_scale: float = 1.0
    """float16 only: the GradScaler-style scale the probe's backward runs under (then unscaled)."""
    fp16_underflow: Fp16Underflow | None = None
    training: TrainingHistory | None = None
    extra_samples: int = 0
    """Samples run forward only so that every ReLU unit was observed often enough (observe.py)."""
    checkpoint: CheckpointInfo | None = None
    """--weights: what was loaded."""
    optimizer_state: Any = None
    """--weights: the optimizer state the checkpoint holds, for --steps."""
    progress: Callable[[str], None] | None = None
    """Told, every PROGRESS_SECONDS, how far a long measurement or training has got."""


PROGRESS_SECONDS = 10.0


def counted(session: Session, what: str, items: Iterable[int], total: int) -> Iterator[int]:
    """`items`, telling `session.progress` "measuring batch 1200 of 1000000 on cpu" at most every
    PROGRESS_SECONDS, so a long loop shows how far it has got."""
    last = time.perf_counter()
    for done, item in enumerate(items):
        now = time.perf_counter()
        if session.progress is not None and now - last >= PROGRESS_SECONDS:
            last = now
            session.progress(f"{what} {done} of {total} on {session.device}")
        yield item


def hook_name(hook: Any) -> str:
    """`get_batch()` for a named function, "a function" for a lambda or a callable object."""
    name = getattr(hook, "__name__", "")
    return f"{name}()" if name.isidentifier() else "a function"


def measure_precision(session: Session) -> None:
    """float16: how many gradient elements flush to zero without a GradScaler, and the scale to use."""
    first = session.batches[0]

    def run_loss(dtype: str) -> torch.Tensor:
        return loss_of(session, first, forward(session, first, dtype), 0).value

    measured = measure_fp16_underflow(session.loaded.module, run_loss, session.config.seed)
    session.fp16_underflow = measured
    session.loss_scale = measured.loss_scale


def forward(session: Session, batch: Batch, dtype: str | None = None) -> Any:
    dtype = dtype or session.config.dtype
    with redirect_stdout_to_stderr(), autocast(session.device, dtype):
        try:
            return session.loaded.module(*batch.args, **batch.kwargs)
        except Exception as exc:
            inputs = (*batch.args, *([batch.kwargs] if batch.kwargs else []))
            message, hint = forward_failure(exc, session.loaded.module, session.plan.origin, inputs)
            first, _, rest = message.partition("\n")
            raise InputError(
                f"{first}{_under_autocast(session.device, dtype)}\n{rest}",
                _autocast_hint(session.device, dtype) + hint,
            ) from exc


def _under_autocast(device: str, dtype: str) -> str:
    return f" (under {dtype} autocast on {device})" if dtype in ("bfloat16", "float16") else ""


def _autocast_hint(device: str, dtype: str) -> str:
    """Some ops have no half-precision kernel on some devices (LSTM in float16 on CPU): say so first."""
    if dtype not in ("bfloat16", "float16"):
        return ""
    other = "bfloat16 or float32" if dtype == "float16" else "float32"
    return f"an op may have no {dtype} kernel on {device}: try --dtype {other}; otherwise "


def loss_of(session: Session, batch: Batch, output: Any, index: int) -> LossChoice:
    generator = stream(session.config.seed, "targets", index)
    loaded = session.loaded
    where = "passed to" if loaded.hooks_from == "analyze()" else "in"
    origin = f"{hook_name(loaded.loss_fn)} {where} {loaded.hooks_from}"
    reference = reference_input(batch)
    choice = compute_loss(
        output, session.config.loss, batch.target, loaded.loss_fn, generator, origin, reference=reference
    )
    require_grad(choice.value, f"the loss ({choice.reason})")
    return choice


def train_steps(session: Session) -> None:
    """--steps: the user's optimizer (or --optimizer), clipping and float16 scaling as configured."""
    from gradcheck_cli.measure import training
    from gradcheck_cli.measure.optimizers import choose_optimizer

    config, model = session.config, session.loaded.module
    loaded = session.loaded
    chosen = choose_optimizer(
        model,
        loaded.optimizer_hook,
        session.optimizer_state,
        config.optimizer,
        config.lr,
        loaded.scheduler_hook,
    )
    # float16 trains as a script would: with a GradScaler (a pass-through for other dtypes).
    scaler = torch.amp.GradScaler(session.device.split(":")[0], enabled=config.dtype == "float16")

    steps = counted(session, "training: step", range(config.steps), config.steps)

    def step_loss(step: int) -> torch.Tensor:
        next(steps, None)
        index = step % len(session.batches)
        batch = session.batches[index]
        return loss_of(session, batch, forward(session, batch), index).value

    if loaded.train_step is not None:  # the user's own step: their zero_grad, clipping, scheduler
        from gradcheck_cli.measure.user_loop import train_user_step, user_batch

        def batch_of(step: int) -> Any:
            next(steps, None)
            return user_batch(session.batches[step % len(session.batches)])

        records = train_user_step(model, chosen, loaded.train_step, batch_of, config.steps)
        loop = "train_step() in the model file"
    else:
        records = training.train(model, chosen, step_loss, config.steps, config.clip, scaler)
        loop = "gradcheck's loop"
    owners = training.owners_of(model)
    session.training = training.history(chosen, owners, records, config.clip, config.steps, loop)


def load_checkpoint(session: Session) -> None:
    """--weights: copy the checkpoint into the model (on the analysis device), keep its optimizer state."""
    from gradcheck_cli.load.weights import load_weights

    assert session.config.weights is not None
    info, raw = load_weights(
        session.loaded.module, session.config.weights, session.device, session.config.weights_partial
    )
    session.checkpoint, session.optimizer_state = info, raw.optimizer_state
