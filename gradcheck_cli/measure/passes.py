"""The records the measuring stages hand down, and the forward and loss passes every stage runs.

Input preparation gives a frozen `Prepared` (the model on its device, the batches, where they
came from, a BatchSource for more); --weights, --steps and float16 give their own records
(`StageRecords`) for the pipeline to pass on to collection. No stage writes into another's record.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from torch import nn

from gradcheck_cli.config.analyze_config import AnalyzeConfig
from gradcheck_cli.load.target import LoadedModel, redirect_stdout_to_stderr
from gradcheck_cli.measure.batch_source import BatchSource
from gradcheck_cli.measure.batches import Batch, reference_input, stream
from gradcheck_cli.measure.device import autocast
from gradcheck_cli.measure.forward_error import forward_failure
from gradcheck_cli.measure.inputs import InputPlan
from gradcheck_cli.measure.losses import LossChoice, compute_loss, require_grad
from gradcheck_cli.records.errors import InputError
from gradcheck_cli.records.headroom import LrHeadroom
from gradcheck_cli.records.precision import PrecisionHeadroom
from gradcheck_cli.records.stats import Fp16Underflow, TrainingHistory
from gradcheck_cli.records.trained import CheckpointInfo

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Prepared:
    """What input preparation gives the later stages (torch tier only)."""

    config: AnalyzeConfig
    loaded: LoadedModel
    device: str
    batches: tuple[Batch, ...]
    plan: InputPlan
    source: BatchSource
    """More batches like `batches`, for statistics that need more samples."""
    progress: Progress | None = None
    """Told, every PROGRESS_SECONDS, how far a long measurement or training has got."""

    @property
    def model(self) -> nn.Module:
        return self.loaded.module

    def with_model(self, model: nn.Module) -> Prepared:
        """The same batches and settings on another model (a changed copy, --try-fixes), quietly."""
        return dataclasses.replace(
            self,
            loaded=dataclasses.replace(self.loaded, module=model),
            source=dataclasses.replace(self.source, model=model),
            progress=None,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StageRecords:
    """What the stages before collection measured, passed on into the ProbeResult."""

    checkpoint: CheckpointInfo | None = None
    """--weights: what was loaded."""
    training: TrainingHistory | None = None
    """--steps: what every step did."""
    fp16_underflow: Fp16Underflow | None = None
    """float16: the gradient elements lost without loss scaling, and the scale to use."""
    precision: PrecisionHeadroom | None = None
    """--precision: each layer's headroom in the number formats asked for."""
    lr_headroom: LrHeadroom | None = None
    """--lr-headroom: the runs at each learning-rate multiplier and the limit."""

    @property
    def loss_scale(self) -> float:
        """float16 only: the GradScaler-style scale the probe's backward runs under (then unscaled)."""
        return self.fp16_underflow.loss_scale if self.fp16_underflow is not None else 1.0


PROGRESS_SECONDS = 10.0


def counted(prepared: Prepared, what: str, items: Iterable[int], total: int) -> Iterator[int]:
    """`items`, telling `prepared.progress` "measuring batch 1200 of 1000000 on cpu" at most every
    PROGRESS_SECONDS, so a long loop shows how far it has got."""
    last = time.perf_counter()
    for done, item in enumerate(items):
        now = time.perf_counter()
        if prepared.progress is not None and now - last >= PROGRESS_SECONDS:
            last = now
            prepared.progress(f"{what} {done} of {total} on {prepared.device}")
        yield item


def hook_name(hook: Any) -> str:
    """`get_batch()` for a named function, "a function" for a lambda or a callable object."""
    name = getattr(hook, "__name__", "")
    return f"{name}()" if name.isidentifier() else "a function"


def forward(prepared: Prepared, batch: Batch, dtype: str | None = None) -> Any:
    dtype = dtype or prepared.config.dtype
    device, model = prepared.device, prepared.model
    with redirect_stdout_to_stderr(), autocast(device, dtype):
        try:
            return model(*batch.args, **batch.kwargs)
        except Exception as exc:
            inputs = (*batch.args, *([batch.kwargs] if batch.kwargs else []))
            message, hint = forward_failure(exc, model, prepared.plan.origin, inputs)
            first, _, rest = message.partition("\n")
            raise InputError(
                f"{first}{_under_autocast(device, dtype)}\n{rest}", _autocast_hint(device, dtype) + hint
            ) from exc


def _under_autocast(device: str, dtype: str) -> str:
    return f" (under {dtype} autocast on {device})" if dtype in ("bfloat16", "float16") else ""


def _autocast_hint(device: str, dtype: str) -> str:
    """Some ops have no half-precision kernel on some devices (LSTM in float16 on CPU): say so first."""
    if dtype not in ("bfloat16", "float16"):
        return ""
    other = "bfloat16 or float32" if dtype == "float16" else "float32"
    return f"an op may have no {dtype} kernel on {device}: try --dtype {other}; otherwise "


def loss_of(prepared: Prepared, batch: Batch, output: Any, index: int) -> LossChoice:
    generator = stream(prepared.config.seed, "targets", index)
    loaded = prepared.loaded
    where = "passed to" if loaded.hooks_from == "analyze()" else "in"
    origin = f"{hook_name(loaded.loss_fn)} {where} {loaded.hooks_from}"
    reference = reference_input(batch)
    choice = compute_loss(
        output, prepared.config.loss, batch.labels, loaded.loss_fn, generator, origin, reference=reference
    )
    require_grad(choice.value, f"the loss ({choice.reason})")
    return choice
