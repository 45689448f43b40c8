"""What `gradcheck_cli.analyze()` checks and sets up around the analysis, in the caller's terms.

- `check_arguments`: out-of-range arguments are a ValueError naming the argument (`batches=0`),
  before any work, with the same bounds as the CLI's flags.
- `check_model`: a model on the meta device, or built inside torch.inference_mode(), is a
  DeviceError that speaks of `analyze(device=...)`, never of the CLI's `--device`.
- `gradients_on`: analyze() called inside torch.no_grad() or torch.inference_mode() turns
  gradients on for its own passes only (the caller's mode is back afterwards) and says so.
- `ONE_AT_A_TIME`: one analysis per process at a time. analyze() installs hooks on the model,
  writes and restores its `.grad` and the global random state: a second thread's call waits
  until the first has finished, so two threads analysing one model never see each other's passes.
  A call from inside an analysis (a model's forward calling analyze()) is a RuntimeError.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import replace
from types import TracebackType
from typing import Any

import torch
from torch import nn

from gradcheck_cli.config.options import MAX_BATCHES, MAX_STEPS, SEED_MAX
from gradcheck_cli.measure.batches import Batch
from gradcheck_cli.measure.device import resolve_device
from gradcheck_cli.records.errors import DeviceError

LOG = logging.getLogger("gradcheck_cli")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_arguments(*, batches: Any, steps: Any, seed: Any) -> None:
    """Each argument in its documented range, or a ValueError that names it."""
    for name, value, low, high in (
        ("batches", batches, 1, MAX_BATCHES),
        ("steps", steps, 0, MAX_STEPS),
        ("seed", seed, 0, SEED_MAX),
    ):
        if not _is_int(value) or not low <= value <= high:
            raise ValueError(f"analyze({name}={value!r}): {name} must be an integer from {low} to {high}")


def check_model(model: nn.Module, device: str | None) -> None:
    """The model's parameters hold data autograd can use, and `device` exists here."""
    # Lazy modules' parameters are uninitialised until the first forward: no data to look at yet.
    params = [p for p in model.parameters() if not isinstance(p, nn.parameter.UninitializedParameter)]
    if any(p.device.type == "meta" for p in params):
        raise DeviceError(
            "analyze(): the model's parameters are on the meta device: they have a shape but no values, "
            "so there is no gradient to measure",
            "materialise the model first, e.g. model.to_empty(device='cpu') and then load its weights",
        )
    if any(p.is_inference() for p in params):
        raise DeviceError(
            "analyze(): the model was built inside torch.inference_mode(): its parameters are inference "
            "tensors, which autograd cannot differentiate",
            "build the model (or load its weights) outside torch.inference_mode()",
        )
    if device is not None:
        try:
            resolve_device(str(device))
        except DeviceError as exc:
            message = exc.message.replace(f"--device {device}", f"analyze(device={device!r})")
            message = message.replace("unknown --device", "analyze(): unknown device")
            raise DeviceError(message, exc.hint) from None


@contextlib.contextmanager
def gradients_on() -> Iterator[str]:
    """Gradients enabled (and inference mode off) for the analysis; the note says when it did that."""
    inference, enabled = torch.is_inference_mode_enabled(), torch.is_grad_enabled()
    note = ""
    if inference or not enabled:
        mode = "torch.inference_mode()" if inference else "torch.no_grad()"
        note = (
            f"analyze() was called inside {mode}: it enabled gradients for its own forward and backward "
            "passes only (the caller's mode is unchanged)"
        )
        LOG.info(note)
    with torch.inference_mode(False), torch.enable_grad():
        yield note


def usable(batch: Batch) -> Batch:
    """A batch whose tensors autograd can use: inference tensors (made inside inference_mode) cloned."""
    return replace(
        batch,
        args=tuple(_normal(a) for a in batch.args),
        kwargs={k: _normal(v) for k, v in batch.kwargs.items()},
        labels=_normal(batch.labels),
    )


def _normal(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        if not value.is_inference():
            return value
        with torch.inference_mode(False):
            return value.clone()
    if isinstance(value, (list, tuple)) and type(value) in (list, tuple):
        return type(value)(_normal(v) for v in value)
    if isinstance(value, dict) and type(value) is dict:
        return {k: _normal(v) for k, v in value.items()}
    return value


class _OneAtATime:
    """A process-wide lock around analyze(); re-entering it from the same thread is refused."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None

    def __enter__(self) -> None:
        if self._owner == threading.get_ident():
            raise RuntimeError(
                "analyze() was called from inside another analyze() in the same thread (from a model's "
                "forward or a callback): analyses run one at a time"
            )
        self._lock.acquire()
        self._owner = threading.get_ident()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._owner = None
        self._lock.release()


ONE_AT_A_TIME = _OneAtATime()
