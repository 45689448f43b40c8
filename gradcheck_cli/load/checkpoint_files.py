"""Read a checkpoint file or folder into tensors, without ever running code from it.

torch.save'd files are read with `torch.load(weights_only=True)`; .safetensors files and
Hugging Face-style folders through the optional `safetensors` package.
"""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gradcheck_cli.records.errors import GradcheckError
from gradcheck_cli.records.files import check_regular, real_path

# Keys under which training loops keep the model's state_dict, most specific first.
CONTAINER_KEYS = ("state_dict", "model_state_dict", "model_state", "model", "module", "net", "network")
OPTIMIZER_KEYS = ("optimizer_states", "optimizer_state_dict", "optimizer", "optim", "opt")
STEP_KEYS = ("global_step", "step", "iteration", "iter", "steps")
SCALER_KEYS = (
    "scaler",
    "grad_scaler",
    "scaler_state_dict",
    "amp_scaler",
    "MixedPrecision",
    "MixedPrecisionPlugin",
    "native_amp_scaling_state",
)
"""Where training loops and Lightning save a torch.amp.GradScaler's state_dict()."""
FOLDER_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
SAFETENSORS_HINT = "pip install 'gradcheck-cli[safetensors]' (or pip install safetensors)"


class CheckpointError(GradcheckError):
    """The checkpoint could not be read, is refused, or does not fit the model."""


@dataclass(slots=True, kw_only=True)
class RawCheckpoint:
    """The tensors of a checkpoint and what surrounded them. Torch tier only."""

    tensors: dict[str, torch.Tensor]
    format: str
    container_key: str | None = None
    optimizer_state: Any = None
    step: int | None = None
    epoch: int | None = None
    scaler: tuple[str, float] | None = None
    """(key, scale) of a GradScaler state saved with the weights: trained under float16 autocast."""


def read_checkpoint(path: Path, device: str) -> RawCheckpoint:
    if not path.exists():
        raise CheckpointError(f"--weights {path}: no such file or folder")
    check_regular(path, "--weights", CheckpointError, folder_ok=True)
    if path.is_dir():
        return _read_folder(path, device)
    if path.suffix == ".safetensors":
        return RawCheckpoint(tensors=_safetensors_file(path, device), format="safetensors")
    raw = _torch_load(path, device)
    return unwrap(raw, path)


def _torch_load(path: Path, device: str) -> Any:
    try:
        return torch.load(path, map_location=device, weights_only=True, mmap=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc):  # legacy (non-zip) files cannot be memory-mapped
            raise _unreadable(path, exc) from None
    except pickle.UnpicklingError as exc:
        raise _refused(path, exc) from None
    except Exception as exc:
        raise _unreadable(path, exc) from None
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise _refused(path, exc) from None
    except Exception as exc:
        raise _unreadable(path, exc) from None


def _refused(path: Path, exc: Exception) -> CheckpointError:
    if "global" not in str(exc).lower():  # not a refused object: the bytes are not a pickle at all
        return _unreadable(path, exc)
    detail = str(exc).strip().splitlines()
    what = next((line.strip() for line in detail if "GLOBAL" in line), "")
    return CheckpointError(
        f"--weights {path}: refused to unpickle: the file holds Python objects beyond tensors and plain "
        f"data, and loading them could run code{f' ({what})' if what else ''}",
        "gradcheck reads checkpoints with torch.load(weights_only=True) only; re-save the weights with "
        "torch.save(model.state_dict(), PATH) or as .safetensors",
    )


def _unreadable(path: Path, exc: Exception) -> CheckpointError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return CheckpointError(
        f"--weights {path}: cannot read it as a PyTorch checkpoint: {first}",
        "pass a file written by torch.save, a .safetensors file, or a folder holding model.safetensors "
        "or pytorch_model.bin",
    )


def _safetensors_file(path: Path, device: str) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise CheckpointError(
            f"--weights {path}: reading .safetensors needs the safetensors package", SAFETENSORS_HINT
        ) from None
    try:
        return dict(load_file(str(path), device=device))
    except Exception as exc:
        raise CheckpointError(f"--weights {path}: cannot read it as safetensors: {exc}") from None


def _read_folder(folder: Path, device: str) -> RawCheckpoint:
    """A Hugging Face-style folder: model.safetensors, sharded safetensors with an index, or a .bin."""
    for name in (*FOLDER_FILES, "pytorch_model.bin.index.json"):
        check_regular(folder / name, "--weights", CheckpointError)
    if (folder / "model.safetensors").is_file():
        return RawCheckpoint(
            tensors=_safetensors_file(folder / "model.safetensors", device), format="safetensors"
        )
    for index_name, fmt in (
        ("model.safetensors.index.json", "safetensors"),
        ("pytorch_model.bin.index.json", "bin"),
    ):
        if (folder / index_name).is_file():
            return _read_shards(folder, folder / index_name, fmt, device)
    if (folder / "pytorch_model.bin").is_file():
        raw = _torch_load(folder / "pytorch_model.bin", device)
        checkpoint = unwrap(raw, folder / "pytorch_model.bin")
        checkpoint.format = "pytorch_model.bin"
        return checkpoint
    raise CheckpointError(
        f"--weights {folder}: a folder without {', '.join(FOLDER_FILES)}",
        "pass the checkpoint file itself, or a Hugging Face-style model folder",
    )


def _read_shards(folder: Path, index: Path, fmt: str, device: str) -> RawCheckpoint:
    check_regular(index, "--weights index", CheckpointError)
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        files = sorted(set(weight_map.values()), key=str)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"--weights {index}: not a shard index ({exc})") from None
    tensors: dict[str, torch.Tensor] = {}
    for name in files:
        shard = _shard_path(folder, index, name)
        if not shard.is_file():
            raise CheckpointError(f"--weights {folder}: the index names {name}, which is not in the folder")
        part = (
            _safetensors_file(shard, device)
            if fmt == "safetensors"
            else unwrap(_torch_load(shard, device), shard).tensors
        )
        tensors.update(part)
    label = "safetensors" if fmt == "safetensors" else "pytorch_model.bin"
    return RawCheckpoint(tensors=tensors, format=f"{label} ({len(files)} shards)")


def _shard_path(folder: Path, index: Path, name: object) -> Path:
    """A shard the index names, refused unless it is a plain file name inside the folder: an index
    must not make gradcheck read `../../secret` or `/etc/...` (symlinks are resolved first)."""
    if not isinstance(name, str) or not name:
        raise CheckpointError(f"--weights {index}: the shard name {name!r} is not a file name")
    text = name
    shard = folder / text
    inside = real_path(shard).is_relative_to(real_path(folder))
    if Path(text).is_absolute() or ".." in Path(text).parts or not inside:
        raise CheckpointError(
            f"--weights {index}: the shard name {name!r} points outside the checkpoint folder",
            "an index names shard files inside its own folder (model-00001-of-00002.safetensors); "
            "refused so that a checkpoint cannot make gradcheck read other files",
        )
    check_regular(shard, "--weights shard", CheckpointError)
    return shard


def unwrap(obj: Any, path: Path) -> RawCheckpoint:
    """Find the state_dict in what torch.load returned: itself, or under a training-loop key."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"--weights {path}: holds a {type(obj).__name__}, not a state_dict",
            "save the weights with torch.save(model.state_dict(), PATH)",
        )
    if _is_state_dict(obj):
        return RawCheckpoint(tensors=_tensors(obj), format="state_dict")
    for key in CONTAINER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and _is_state_dict(inner):
            lightning = any("lightning" in str(k) for k in obj)
            return RawCheckpoint(
                tensors=_tensors(inner),
                format="Lightning checkpoint" if lightning else "training checkpoint",
                container_key=key,
                optimizer_state=_optimizer_state(obj),
                step=_int_of(obj, STEP_KEYS, path),
                epoch=_int_of(obj, ("epoch",), path),
                scaler=_scaler_state(obj),
            )
    keys = ", ".join(repr(k) for k in list(obj)[:8])
    raise CheckpointError(
        f"--weights {path}: no state_dict found (top-level keys: {keys})",
        f"gradcheck looks for the weights at the top level or under {', '.join(CONTAINER_KEYS)}",
    )


def _is_state_dict(obj: Mapping[Any, Any]) -> bool:
    """Mostly tensors keyed by dotted names (a few non-tensor entries, e.g. _extra_state, are allowed)."""
    tensors = sum(1 for v in obj.values() if isinstance(v, torch.Tensor))
    return tensors > 0 and tensors >= 0.5 * len(obj) and all(isinstance(k, str) for k in obj)


def _tensors(obj: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors, sparse ones made dense (a parameter is dense; the values are the same)."""
    return {k: _dense(v) for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _dense(tensor: torch.Tensor) -> torch.Tensor:
    return tensor if tensor.layout == torch.strided else tensor.to_dense()


def _optimizer_state(obj: Mapping[str, Any]) -> Any:
    for key in OPTIMIZER_KEYS:
        state = obj.get(key)
        if isinstance(state, list) and len(state) == 1:  # Lightning: one entry per optimizer
            state = state[0]
        if isinstance(state, Mapping) and "state" in state and "param_groups" in state:
            return state
    return None


def _scaler_state(obj: Mapping[str, Any]) -> tuple[str, float] | None:
    for key in SCALER_KEYS:
        state = obj.get(key)
        scale = state.get("scale") if isinstance(state, Mapping) else None
        if isinstance(scale, torch.Tensor) and scale.numel() == 1:
            scale = scale.item()
        if isinstance(scale, (int, float)) and not isinstance(scale, bool):
            return key, float(scale)
    return None


def _int_of(obj: Mapping[str, Any], keys: tuple[str, ...], path: Path) -> int | None:
    for key in keys:
        value = obj.get(key)
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise CheckpointError(
                    f"--weights {path}: the checkpoint's {key!r} is {value}, not a count",
                    f"a training checkpoint stores {key} as a whole number; re-save it, or save "
                    "the state_dict alone",
                )
            return int(value)
    return None
