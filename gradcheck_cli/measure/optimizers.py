"""--steps trains with the user's optimizer: which one, built how.

In order: `configure_optimizers()` on the model (PyTorch Lightning's name) or a
`configure_optimizers` / `build_optimizer` / `optimizer` function in the model file; else the
optimizer state saved in the --weights checkpoint (the class is read from its hyperparameters);
else --optimizer/--lr. A checkpoint's state (Adam's moments) is loaded into whichever optimizer
is used when its parameter groups fit. A `build_scheduler(optimizer)` in the model file gives the
scheduler when the optimizer hook gave none.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gradcheck_cli.records.errors import ConfigError

DEFAULT_LR = 0.01


@dataclass(slots=True, kw_only=True)
class ChosenOptimizer:
    """Torch tier only: the optimizer --steps uses and where it came from."""

    optimizer: torch.optim.Optimizer
    source: str
    """e.g. 'configure_optimizers() on the model', 'checkpoint optimizer state', '--optimizer sgd'."""
    scheduler: Any = None
    """A scheduler stepped after every optimizer step (Lightning interval 'step'), or None."""
    state_note: str = ""
    """What happened to the checkpoint's optimizer state (loaded / did not fit / none)."""


def choose_optimizer(
    model: nn.Module,
    file_hook: Callable[..., Any] | None,
    saved_state: Mapping[str, Any] | None,
    name: str,
    lr: float | None,
    scheduler_hook: Callable[..., Any] | None = None,
) -> ChosenOptimizer:
    chosen = _with_scheduler(_choose(model, file_hook, saved_state, name, lr), scheduler_hook)
    if saved_state is not None and not chosen.source.startswith("checkpoint"):
        chosen.state_note = _load_state(chosen.optimizer, saved_state)
    return chosen


def _with_scheduler(chosen: ChosenOptimizer, hook: Callable[..., Any] | None) -> ChosenOptimizer:
    """A scheduler factory in the model file (`build_scheduler(optimizer)`), when the optimizer
    hook gave none: a bare scheduler steps after every optimizer step (Lightning's dict form
    with "interval": "epoch" is not stepped within --steps)."""
    if chosen.scheduler is not None or hook is None:
        return chosen
    label = f"{hook.__name__}() in the model file"
    try:
        returned = hook(chosen.optimizer)
    except Exception as exc:
        raise ConfigError(
            f"--steps: {label} raised {type(exc).__name__}: {exc}",
            "it is called with the optimizer and must return a learning-rate scheduler",
        ) from None
    if isinstance(returned, Mapping):
        chosen.scheduler = returned.get("scheduler") if returned.get("interval", "step") == "step" else None
    else:
        chosen.scheduler = returned
    return chosen


def _choose(
    model: nn.Module,
    file_hook: Callable[..., Any] | None,
    saved_state: Mapping[str, Any] | None,
    name: str,
    lr: float | None,
) -> ChosenOptimizer:
    chosen = _from_model_or_file(model, file_hook)
    if chosen is None and saved_state is not None:
        chosen = _from_saved_state(model, saved_state)
    if chosen is None:
        chosen = _from_flags(model, name, lr)
    elif lr is not None:  # --lr given: the user asks to try another rate with their optimizer
        for group in chosen.optimizer.param_groups:
            group["lr"] = lr
    return chosen


def _from_model_or_file(model: nn.Module, file_hook: Callable[..., Any] | None) -> ChosenOptimizer | None:
    method = getattr(model, "configure_optimizers", None)
    if callable(method):
        return _unpack(_call(method, model, "configure_optimizers()"), "configure_optimizers() on the model")
    if file_hook is not None:
        label = f"{file_hook.__name__}() in the model file"
        return _unpack(_call(file_hook, model, label, with_model=True), label)
    return None


def _call(hook: Callable[..., Any], model: nn.Module, label: str, with_model: bool = False) -> Any:
    try:
        if not with_model:
            return hook()
        params = list(inspect.signature(hook).parameters)
        if params and params[0] in ("model", "module", "net", "network"):
            return hook(model)
        return hook([p for p in model.parameters() if p.requires_grad])
    except Exception as exc:
        raise ConfigError(
            f"--steps: {label} raised {type(exc).__name__}: {exc}",
            "it is called with the model's trainable parameters (or the model, if its first argument is "
            "named model) and must return an optimizer",
        ) from None


def _unpack(returned: Any, source: str) -> ChosenOptimizer:
    """Lightning's return forms: an optimizer, a list, a dict, a (optimizers, schedulers) tuple."""
    optimizer, scheduler = _split(returned)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError(
            f"--steps: {source} returned {type(returned).__name__}, not an optimizer",
            "return an optimizer, a list of them, {'optimizer': ..., 'lr_scheduler': ...} or ([optimizers], [schedulers])",
        )
    return ChosenOptimizer(optimizer=optimizer, source=source, scheduler=scheduler)


def _split(returned: Any) -> tuple[Any, Any]:
    if isinstance(returned, Mapping):
        return returned.get("optimizer"), _step_scheduler(returned.get("lr_scheduler"))
    if (
        isinstance(returned, tuple)
        and len(returned) == 2
        and all(isinstance(r, (list, tuple)) for r in returned)
    ):
        optimizers, schedulers = returned
        return (optimizers[0] if optimizers else None), _step_scheduler(schedulers[0] if schedulers else None)
    if isinstance(returned, (list, tuple)):
        return _split(returned[0]) if returned else (None, None)
    return returned, None


def _step_scheduler(entry: Any) -> Any:
    """Only schedulers that step per batch change what K steps do (Lightning's default is per epoch)."""
    if isinstance(entry, Mapping):
        return entry.get("scheduler") if entry.get("interval") == "step" else None
    return None


def _from_saved_state(model: nn.Module, state: Mapping[str, Any]) -> ChosenOptimizer | None:
    groups = state.get("param_groups") or []
    cls = _class_of(groups[0]) if groups else None
    params = [p for p in model.parameters() if p.requires_grad]
    sizes = [len(g.get("params", ())) for g in groups]
    if cls is None or sum(sizes) != len(params):
        return None
    split, start = [], 0
    for size in sizes:
        split.append({"params": params[start : start + size]})
        start += size
    optimizer = cls(split, lr=float(groups[0].get("lr", DEFAULT_LR)))  # type: ignore[call-arg]
    note = _load_state(optimizer, state)
    return ChosenOptimizer(
        optimizer=optimizer, source=f"checkpoint optimizer state ({cls.__name__})", state_note=note
    )


def _class_of(group: Mapping[str, Any]) -> type[torch.optim.Optimizer] | None:
    if "betas" in group:
        return torch.optim.AdamW if group.get("decoupled_weight_decay") else torch.optim.Adam
    if "centered" in group:
        return torch.optim.RMSprop
    if "nesterov" in group:
        return torch.optim.SGD
    return None


def _load_state(optimizer: torch.optim.Optimizer, state: Mapping[str, Any]) -> str:
    lacking = _missing_group_keys(optimizer, state)
    if lacking:  # loading would replace the groups by ones the optimizer's step() cannot read
        return (
            f"the checkpoint's optimizer state did not fit (its param groups lack {lacking}); started fresh"
        )
    try:
        optimizer.load_state_dict(dict(state))
    except (ValueError, KeyError, RuntimeError) as exc:
        return f"the checkpoint's optimizer state did not fit ({_first_line(exc)}); started fresh"
    return "loaded from the checkpoint"


def _missing_group_keys(optimizer: torch.optim.Optimizer, state: Mapping[str, Any]) -> str:
    """The settings the optimizer's step reads (its defaults' keys) that a saved group lacks:
    a hand-trimmed or foreign state (no 'weight_decay') that step() would fail on with KeyError."""
    groups = state.get("param_groups")
    if not isinstance(groups, (list, tuple)) or not all(isinstance(g, Mapping) for g in groups):
        return ""
    missing = sorted({key for g in groups for key in optimizer.defaults if key not in g})
    return ", ".join(repr(k) for k in missing)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _from_flags(model: nn.Module, name: str, lr: float | None) -> ChosenOptimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    rate = DEFAULT_LR if lr is None else lr
    optimizer: torch.optim.Optimizer
    optimizer = torch.optim.Adam(params, lr=rate) if name == "adam" else torch.optim.SGD(params, lr=rate)
    return ChosenOptimizer(optimizer=optimizer, source=f"--optimizer {name}")


def optimizer_name(optimizer: torch.optim.Optimizer) -> str:
    return type(optimizer).__name__.lower()


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def group_lrs(optimizer: torch.optim.Optimizer) -> Sequence[float]:
    return [float(g["lr"]) for g in optimizer.param_groups]
