"""--weights PATH: map a checkpoint's keys onto the model gradcheck built and load them.

Wrapper prefixes (DDP `module.`, torch.compile `_orig_mod.`, a LightningModule attribute such
as `model.`) are found by trying which strip makes the most keys fit, so no list of names has
to be complete. Anything that still does not fit is an error naming the closest key, unless
--weights-partial accepts it (and the report lists what stayed at init).
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from gradcheck_cli.load.checkpoint_files import CheckpointError, RawCheckpoint, read_checkpoint
from gradcheck_cli.records.trained import CheckpointInfo, KeyMismatch

SHOWN = 5
"""Keys listed per kind in the exit-2 message."""
MIN_FILLED = 0.05
"""--weights-partial still refuses a checkpoint that fills less than this fraction of the model's
elements: what is measured would be the model at init, reported as if it were the checkpoint."""


@dataclass(slots=True, kw_only=True)
class KeyMap:
    """Checkpoint keys renamed to model keys, and what was done to get there."""

    renamed: dict[str, str] = field(default_factory=dict)
    """Model key -> checkpoint key."""
    stripped: list[str] = field(default_factory=list)
    added: str | None = None
    ignored: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


def load_weights(
    model: nn.Module, path: Path, device: str, partial: bool
) -> tuple[CheckpointInfo, RawCheckpoint]:
    """Read `path`, map its keys and copy the tensors into `model` (in place)."""
    started = time.perf_counter()
    checkpoint = read_checkpoint(path, device)
    own = model.state_dict()
    keymap = map_keys(list(checkpoint.tensors), list(own))
    missing = [k for k in own if k not in keymap.renamed]
    shapes = _shape_mismatches(own, checkpoint.tensors, keymap)
    _check_dtypes(path, own, checkpoint.tensors, keymap)
    skipped = {m.key for m in shapes}
    values = {k: checkpoint.tensors[c] for k, c in keymap.renamed.items() if k not in skipped}
    filled = _filled(own, values)
    if (missing or keymap.unexpected or shapes) and (not partial or filled < MIN_FILLED):
        raise _mismatch_error(path, model, keymap, missing, shapes, checkpoint, filled)
    with torch.no_grad():
        model.load_state_dict(values, strict=False)
    info = CheckpointInfo(
        path=str(path),
        format=checkpoint.format,
        container_key=checkpoint.container_key,
        stripped_prefixes=tuple(keymap.stripped),
        added_prefix=keymap.added,
        loaded=len(values),
        model_tensors=len(own),
        at_init=tuple(missing) + tuple(sorted(skipped)),
        unexpected=tuple(keymap.unexpected),
        shape_mismatched=tuple(m.key for m in shapes),
        ignored=tuple(keymap.ignored),
        step=checkpoint.step,
        epoch=checkpoint.epoch,
        optimizer_state=checkpoint.optimizer_state is not None,
        seconds=time.perf_counter() - started,
    )
    return info, checkpoint


def _filled(own: Mapping[str, torch.Tensor], values: Mapping[str, object]) -> float:
    """The fraction of the model's state elements the checkpoint fills."""
    total = sum(t.numel() for t in own.values())
    return sum(own[k].numel() for k in values) / total if total else 1.0


def map_keys(saved: list[str], wanted: list[str]) -> KeyMap:
    """Strip (or add) whole leading name components while that makes more keys fit the model."""
    target = set(wanted)
    keys = {k: k for k in saved}  # current name -> saved name
    keymap = KeyMap()
    for _ in range(2):
        prefix = _best_strip(list(keys), target)
        if prefix is None:
            break
        keymap.stripped += [part + "." for part in prefix[:-1].split(".")]
        inside = {k[len(prefix) :]: s for k, s in keys.items() if k.startswith(prefix)}
        keymap.ignored += [s for k, s in keys.items() if not k.startswith(prefix)]
        keys = inside
    added = _best_addition(list(keys), wanted)
    if added is not None:
        keymap.added = added
        keys = {added + k: s for k, s in keys.items()}
    keymap.renamed = {k: s for k, s in keys.items() if k in target}
    keymap.unexpected = [s for k, s in keys.items() if k not in target]
    return keymap


def _best_strip(keys: list[str], target: Collection[str]) -> str | None:
    """The leading components (up to three: 'module._orig_mod.model.') whose removal fits most keys."""
    best, choice = sum(k in target for k in keys), None
    for prefix in sorted(_leading(keys), key=len):
        fit = sum(k[len(prefix) :] in target for k in keys if k.startswith(prefix))
        if fit > best:
            best, choice = fit, prefix
    return choice


def _leading(keys: list[str], depth: int = 3) -> set[str]:
    out: set[str] = set()
    for key in keys:
        parts = key.split(".")[:-1]
        out.update(".".join(parts[: i + 1]) + "." for i in range(min(depth, len(parts))))
    return out


def _best_addition(keys: list[str], wanted: list[str]) -> str | None:
    """The checkpoint holds one submodule of the model (`encoder.` missing from every key)."""
    best = sum(k in wanted for k in keys)
    choice = None
    for prefix in sorted({w.split(".", 1)[0] + "." for w in wanted if "." in w}):
        fit = sum(prefix + k in wanted for k in keys)
        if fit > best:
            best, choice = fit, prefix
    return choice


def _shape_mismatches(
    own: Mapping[str, torch.Tensor], saved: Mapping[str, torch.Tensor], keymap: KeyMap
) -> list[KeyMismatch]:
    out = []
    for key, source in keymap.renamed.items():
        theirs, ours = saved[source].shape, own[key].shape
        if theirs != ours:
            out.append(KeyMismatch(key=key, detail=f"checkpoint {_shape(theirs)}, model {_shape(ours)}"))
    return out


def dtype_class(dtype: torch.dtype) -> str:
    """float, complex, integer (bool included) or quantized: a value keeps its meaning only
    inside its class (an int64 weight cast to float is not the weight that was trained)."""
    if dtype.is_complex:
        return "complex"
    if dtype.is_floating_point:
        return "float"
    if "q" in str(dtype).rsplit(".", 1)[-1][:2]:  # torch.qint8, torch.quint8, ...
        return "quantized"
    return "integer"


def _check_dtypes(
    path: Path, own: Mapping[str, torch.Tensor], saved: Mapping[str, torch.Tensor], keymap: KeyMap
) -> None:
    """Every tensor loaded must be of the class of the model's: float into float, never an integer
    or complex tensor cast silently into a float parameter (exit 2, even with --weights-partial)."""
    wrong = [
        f"{key} (checkpoint {str(saved[source].dtype).removeprefix('torch.')}, "
        f"model {str(own[key].dtype).removeprefix('torch.')})"
        for key, source in keymap.renamed.items()
        if dtype_class(saved[source].dtype) != dtype_class(own[key].dtype)
    ]
    if wrong:
        listed = "; ".join(wrong[:SHOWN]) + (
            f"; ... and {len(wrong) - SHOWN} more" if len(wrong) > SHOWN else ""
        )
        raise CheckpointError(
            f"--weights {path}: {len(wrong)} tensor{'s' if len(wrong) != 1 else ''} of another kind "
            f"than the model's: {listed}",
            "a checkpoint's tensors must be float where the model's are float (any float width is "
            "cast); integer, complex or quantized values would be cast into other numbers than were "
            "trained: save the float weights (model.state_dict()) instead",
        )


def _shape(shape: torch.Size) -> str:
    return "x".join(str(d) for d in shape) or "scalar"


def _mismatch_error(
    path: Path,
    model: nn.Module,
    keymap: KeyMap,
    missing: list[str],
    shapes: list[KeyMismatch],
    checkpoint: RawCheckpoint,
    filled: float,
) -> CheckpointError:
    # A missing key's closest is looked for among the keys left over on the other side first:
    # a renamed attribute shows up as one missing and one unexpected key of similar names.
    unexpected = [_current(k, keymap) for k in keymap.unexpected]
    counts = [
        f"{len(missing)} missing" if missing else "",
        f"{len(unexpected)} unexpected" if unexpected else "",
        f"{len(shapes)} with another shape" if shapes else "",
    ]
    lines = [
        f"--weights {path} does not fit {type(model).__name__}: "
        f"{', '.join(c for c in counts if c)} (of {len(checkpoint.tensors)} checkpoint tensors; {_mapped(keymap)})"
    ]
    saved = [*keymap.renamed, *unexpected]
    lines += _listed("missing in the checkpoint", missing, unexpected, saved, "closest in the checkpoint")
    lines += _listed(
        "not in the model", unexpected, missing, list(model.state_dict()), "closest in the model"
    )
    lines += [f"  shape differs: {m.key} ({m.detail})" for m in shapes[:SHOWN]]
    if len(shapes) > SHOWN:
        lines.append(f"  ... and {len(shapes) - SHOWN} more with another shape")
    build = "build the model that was trained (constructor arguments via --init or a call form 'model.py:Net(...)')"
    if filled < MIN_FILLED:
        lines.append(
            f"  it fills {filled:.0%} of the model's values: measured, the model would be at init, "
            "not the checkpoint (--weights-partial needs it to fill at least "
            f"{MIN_FILLED:.0%})"
        )
        return CheckpointError("\n".join(lines), f"is this the checkpoint of this model? {build}")
    return CheckpointError(
        "\n".join(lines),
        f"{build}, or pass --weights-partial to load the keys that fit and keep the rest at init",
    )


def _current(saved: str, keymap: KeyMap) -> str:
    name = saved
    prefix = "".join(keymap.stripped)
    name = name[len(prefix) :] if name.startswith(prefix) else name
    return (keymap.added or "") + name


def _mapped(keymap: KeyMap) -> str:
    parts = [f"stripped {p!r}" for p in keymap.stripped] + (
        [f"added {keymap.added!r}"] if keymap.added else []
    )
    return "keys " + (", ".join(parts) if parts else "as saved")  # e.g. "keys stripped 'module.'"


def _listed(label: str, keys: list[str], leftovers: list[str], others: list[str], closest: str) -> list[str]:
    lines = []
    for key in keys[:SHOWN]:
        near = difflib.get_close_matches(key, leftovers, n=1, cutoff=0.3) or difflib.get_close_matches(
            key, others, n=1, cutoff=0.5
        )
        lines.append(f"  {label}: {key}" + (f" ({closest}: {near[0]})" if near else ""))
    if len(keys) > SHOWN:
        lines.append(f"  ... and {len(keys) - SHOWN} more {label}")
    return lines
