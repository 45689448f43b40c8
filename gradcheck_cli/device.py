"""Pick the device and precision to run on."""

from __future__ import annotations

import contextlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from gradcheck_cli.errors import DeviceError
from gradcheck_cli.stats import Fp16Underflow, LayerUnderflow


@dataclass(frozen=True, slots=True, kw_only=True)
class Availability:
    """What this machine offers; injected in tests to exercise every branch without a GPU."""

    cuda_count: int
    mps: bool

    @classmethod
    def detect(cls) -> Availability:
        mps = getattr(torch.backends, "mps", None)
        return cls(
            cuda_count=torch.cuda.device_count() if torch.cuda.is_available() else 0,
            mps=bool(mps and mps.is_available()),
        )

    def describe(self) -> str:
        found = ["cpu"]
        if self.cuda_count:
            found.append("cuda" + (f" (cuda:0..cuda:{self.cuda_count - 1})" if self.cuda_count > 1 else ""))
        if self.mps:
            found.append("mps")
        return ", ".join(found)


def resolve_device(spec: str, available: Availability | None = None) -> str:
    """'auto' picks cuda, then mps, then cpu; an explicit device must exist here."""
    available = available or Availability.detect()
    spec = spec.strip().lower()
    if spec == "auto":
        return "cuda" if available.cuda_count else "mps" if available.mps else "cpu"
    if spec == "cpu":
        return "cpu"
    match = re.fullmatch(r"cuda(?::(\d+))?", spec)
    if match:
        index = int(match.group(1) or 0)
        if index >= available.cuda_count:
            have = f"{available.cuda_count} CUDA device(s)" if available.cuda_count else "no CUDA device"
            raise DeviceError(
                f"--device {spec}: this machine has {have}", f"available: {available.describe()}"
            )
        return spec if match.group(1) else "cuda"
    if spec == "mps":
        if not available.mps:
            raise DeviceError(
                "--device mps: MPS (Apple GPU) is not available here", f"available: {available.describe()}"
            )
        return "mps"
    raise DeviceError(f"unknown --device {spec!r}", "use auto, cpu, cuda, cuda:N or mps")


DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def model_dtype(dtype: str) -> torch.dtype:
    """The dtype parameters live in: float64 converts the model, mixed precision keeps float32."""
    return torch.float64 if dtype == "float64" else torch.float32


def autocast(device: str, dtype: str) -> contextlib.AbstractContextManager[object]:
    """Autocast for bfloat16/float16, as a training script would run the forward pass."""
    if dtype not in ("bfloat16", "float16"):
        return contextlib.nullcontext()
    device_type = device.split(":")[0]
    if dtype == "float16" and device_type == "cpu" and not _cpu_fp16_autocast():
        raise DeviceError(
            "--dtype float16 autocast is not supported on CPU by this torch", "use bfloat16 on CPU"
        )
    return torch.autocast(device_type=device_type, dtype=DTYPES[dtype])


def _cpu_fp16_autocast() -> bool:
    try:
        with torch.autocast(device_type="cpu", dtype=torch.float16):
            pass
    except (RuntimeError, AssertionError):
        return False
    return True


def seed_everything(seed: int) -> None:
    """Seed what a model file may draw from: torch (CPU, every CUDA device, MPS) and Python's random."""
    torch.manual_seed(seed)  # seeds the CPU generator and every CUDA/MPS device's generator
    random.seed(seed)


# -- float16 underflow ---------------------------------------------------------------------------
# The loss scale torch.amp.GradScaler starts at and how it backs off after an overflow.
GRAD_SCALER_INIT = 2.0**16
GRAD_SCALER_BACKOFF = 0.5

RunLoss = Callable[[str], torch.Tensor]
"""Runs one forward pass under the given dtype ('float32' or 'float16') and returns the loss."""


def measure_fp16_underflow(model: nn.Module, run_loss: RunLoss, seed: int) -> Fp16Underflow:
    """Count parameter-gradient elements that are nonzero in float32 but zero under float16 autocast.

    Three runs of the same batch with the same seed (dropout draws the same masks): float32
    for reference, float16 without loss scaling, float16 with the loss scaled as GradScaler
    would scale it (backing off on overflow). Counts stay on the device; one host transfer.
    """
    names, params = _owned_parameters(model)
    was_training = model.training
    model.train()
    try:
        nonzero = [g != 0 for g in _gradients(model, params, lambda: run_loss("float32"), seed)]
        unscaled_grads = _gradients(model, params, lambda: run_loss("float16"), seed)
        unscaled = _flushed(unscaled_grads, nonzero)
        # Overflow already without scaling (the forward overflows float16): no scale helps.
        start = GRAD_SCALER_INIT if _all_finite(unscaled_grads) else 1.0
        scale, scaled_grads = _settle_loss_scale(model, params, run_loss, seed, start)
        scaled = _flushed(scaled_grads, nonzero)
        counts = torch.stack([torch.stack([m.sum() for m in nonzero]).float(), unscaled, scaled]).tolist()
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return _underflow_record(names, counts, scale)


def _owned_parameters(model: nn.Module) -> tuple[list[str], list[nn.Parameter]]:
    """Trainable parameters with the name of the module that owns them (tied ones once)."""
    names, params = [], []
    for full_name, param in model.named_parameters():
        if param.requires_grad:
            owner = full_name.rpartition(".")[0]
            names.append(owner or type(model).__name__)
            params.append(param)
    return names, params


def _gradients(
    model: nn.Module,
    params: list[nn.Parameter],
    loss: Callable[[], torch.Tensor],
    seed: int,
    scale: float = 1.0,
) -> list[torch.Tensor]:
    torch.manual_seed(seed)
    model.zero_grad(set_to_none=True)
    (loss() * scale).backward()
    return [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]


def _flushed(grads: list[torch.Tensor], nonzero: list[torch.Tensor]) -> torch.Tensor:
    """Per parameter: elements that are zero here but were nonzero in float32."""
    return torch.stack([((g == 0) & m).sum() for g, m in zip(grads, nonzero, strict=True)]).float()


def _settle_loss_scale(
    model: nn.Module, params: list[nn.Parameter], run_loss: RunLoss, seed: int, start: float
) -> tuple[float, list[torch.Tensor]]:
    """The scale GradScaler would settle on for this batch: halve while the scaled gradients overflow."""
    scale = start
    while True:
        grads = _gradients(model, params, lambda: run_loss("float16"), seed, scale)
        if scale <= 1.0 or _all_finite(grads):
            return scale, grads
        scale *= GRAD_SCALER_BACKOFF


def _all_finite(grads: list[torch.Tensor]) -> bool:
    return bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())  # one host sync


def _underflow_record(names: list[str], counts: list[list[float]], scale: float) -> Fp16Underflow:
    per_layer: dict[str, list[float]] = {}
    for name, nonzero, unscaled, scaled in zip(names, *counts, strict=True):
        totals = per_layer.setdefault(name, [0.0, 0.0, 0.0])
        for i, value in enumerate((nonzero, unscaled, scaled)):
            totals[i] += value
    nonzero_total = sum(counts[0])
    return Fp16Underflow(
        loss_scale=scale,
        elements=int(nonzero_total),
        fraction_without_scaler=_fraction(sum(counts[1]), nonzero_total),
        fraction_with_scaler=_fraction(sum(counts[2]), nonzero_total),
        layers=tuple(
            LayerUnderflow(
                name=name,
                elements=int(t[0]),
                fraction_without_scaler=_fraction(t[1], t[0]),
                fraction_with_scaler=_fraction(t[2], t[0]),
            )
            for name, t in per_layer.items()
        ),
    )


def _fraction(part: float, whole: float) -> float:
    return part / whole if whole else 0.0
