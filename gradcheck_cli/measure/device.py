"""Pick the device and precision to run on."""

from __future__ import annotations

import contextlib
import random
import re
from dataclasses import dataclass

import torch

from gradcheck_cli.records.errors import DeviceError


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
