"""The precision a checkpoint was trained in, so that --weights analyses it in that precision.

From the checkpoint itself: its floating-point tensors' dtype (a model trained and saved in
float16 or bfloat16), else a GradScaler state saved with it (float16 autocast with loss scaling,
parameters kept in float32). The analysis then runs under that dtype unless --dtype (or a
config file's `dtype:`) says otherwise, and the report says which precision and why.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from gradcheck_cli.config.analyze_config import AnalyzeConfig

DTYPES = {"torch.float16": "float16", "torch.bfloat16": "bfloat16", "torch.float64": "float64"}
MAJORITY = 0.5
"""A dtype other than float32 is the trained one when it holds more than this share of the elements."""


def trained_precision(path: Path, device: str) -> tuple[str, str] | None:
    """(dtype, why) when the checkpoint was trained in a precision other than float32, else None."""
    from gradcheck_cli.load.checkpoint_files import read_checkpoint

    raw = read_checkpoint(path, device)
    counts: dict[str, int] = {}
    for tensor in raw.tensors.values():
        if tensor.is_floating_point():
            counts[str(tensor.dtype)] = counts.get(str(tensor.dtype), 0) + tensor.numel()
    total = sum(counts.values())
    main = max(counts, key=lambda k: counts[k], default=None)
    if main in DTYPES and total and counts[main] > MAJORITY * total:
        name = DTYPES[main]
        return name, f"the checkpoint's tensors are {name} ({counts[main]:,} of {total:,} elements)"
    if raw.scaler is not None:
        key, scale = raw.scaler
        return "float16", (
            f"the checkpoint holds a GradScaler state under {key!r} (loss scale {scale:g}): "
            "trained under float16 autocast"
        )
    return None


def with_trained_precision(config: AnalyzeConfig, device: str = "cpu") -> AnalyzeConfig:
    """`config` with the checkpoint's trained precision when --dtype did not set one.

    The checkpoint is read on the CPU (memory-mapped where torch can): only dtypes are looked at."""
    if config.weights is None or config.dtype_given:
        return config
    found = trained_precision(config.weights, device)
    if found is None:
        return replace(config, dtype_reason="the checkpoint's tensors are float32 (the default)")
    dtype, why = found
    return replace(config, dtype=dtype, dtype_reason=f"{why}; --dtype overrides it")
