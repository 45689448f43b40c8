"""`analyze(model)` hands the model back exactly as it found it, also when it raises or is interrupted.

What the analysis itself may touch is saved before and put back after, in a `finally`:
- every buffer's value (BatchNorm running_mean/var/num_batches_tracked move in a train-mode
  forward), and each module's buffer, parameter and hook dictionaries as they were;
- each module's own `training` flag (a Dropout left in eval inside a model in train stays in eval);
- each parameter's `.grad` (the same tensor object, or None) and `requires_grad`;
- the global random states: torch CPU, every initialised CUDA device, Python `random`, and
  numpy's when numpy is loaded; grad mode, anomaly detection and the default dtype.
Parameter values are never written by the analysis: options that change them or their dtype or
device (steps, dtype, device) run on a deep copy (`working_copy`).
"""

from __future__ import annotations

import contextlib
import copy
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gradcheck_cli.records.errors import GradcheckError

_MODULE_DICTS = (
    "_buffers",
    "_parameters",
    "_modules",
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)
_GLOBAL_HOOKS = (
    "_global_forward_hooks",
    "_global_forward_hooks_always_called",
    "_global_forward_pre_hooks",
    "_global_backward_hooks",
    "_global_backward_pre_hooks",
)


@dataclass(slots=True)
class _ModuleState:
    module: nn.Module
    training: bool
    dicts: dict[str, dict[str, Any]]
    buffer_values: dict[str, torch.Tensor]


@dataclass(slots=True)
class _ParamState:
    param: nn.Parameter
    grad: torch.Tensor | None
    requires_grad: bool


@dataclass(slots=True)
class _RandomState:
    torch_cpu: torch.Tensor
    cuda: list[torch.Tensor] | None
    python: Any
    numpy: Any

    @classmethod
    def capture(cls) -> _RandomState:
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        numpy = sys.modules.get("numpy")
        return cls(
            torch_cpu=torch.get_rng_state(),
            cuda=cuda,
            python=random.getstate(),
            numpy=numpy.random.get_state() if numpy is not None else None,
        )

    def restore(self) -> None:
        torch.set_rng_state(self.torch_cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)
        random.setstate(self.python)
        numpy = sys.modules.get("numpy")
        if numpy is not None and self.numpy is not None:
            numpy.random.set_state(self.numpy)


@dataclass(slots=True)
class ModelState:
    modules: list[_ModuleState]
    params: list[_ParamState]
    random_state: _RandomState
    global_hooks: dict[str, dict[Any, Any]]
    switches: tuple[bool, bool, torch.dtype]
    """Grad mode, anomaly detection and the default dtype."""

    @classmethod
    def capture(cls, model: nn.Module) -> ModelState:
        modules = [_capture_module(m) for m in model.modules()]
        params = [_ParamState(p, p.grad, p.requires_grad) for p in _unique_params(model)]
        switches = (torch.is_grad_enabled(), torch.is_anomaly_enabled(), torch.get_default_dtype())
        return cls(modules, params, _RandomState.capture(), _global_hooks(), switches)

    def detach_grads(self) -> None:
        """The analysis starts from no gradient, so backward never accumulates into the caller's."""
        for state in self.params:
            if state.grad is not None:
                state.param.grad = None

    def restore(self) -> None:
        with torch.no_grad():
            for state in self.modules:
                _restore_module(state)
            for p in self.params:
                if p.param.requires_grad != p.requires_grad:
                    p.param.requires_grad_(p.requires_grad)
                if p.param.grad is not p.grad:
                    p.param.grad = p.grad
        for name, saved in self.global_hooks.items():
            live = getattr(nn.modules.module, name)
            live.clear()
            live.update(saved)
        self.random_state.restore()
        grad_enabled, anomaly, default_dtype = self.switches
        torch.set_grad_enabled(grad_enabled)
        torch.set_anomaly_enabled(anomaly)
        torch.set_default_dtype(default_dtype)


def _capture_module(module: nn.Module) -> _ModuleState:
    dicts = {
        name: dict(getattr(module, name))
        for name in _MODULE_DICTS
        if isinstance(getattr(module, name, None), dict)
    }
    values = {name: b.detach().clone() for name, b in module._buffers.items() if b is not None}
    return _ModuleState(module, module.training, dicts, values)


def _restore_module(state: _ModuleState) -> None:
    module = state.module
    for name, saved in state.dicts.items():
        live = getattr(module, name)
        live.clear()
        live.update(saved)
    for name, value in state.buffer_values.items():
        buffer = module._buffers[name]
        assert buffer is not None
        if buffer.shape == value.shape and buffer.dtype == value.dtype and buffer.device == value.device:
            buffer.copy_(value)  # the same tensor object the caller may hold
        else:
            buffer.data = value
    module.training = state.training  # this module's own flag, not its children's


def _unique_params(model: nn.Module) -> list[nn.Parameter]:
    return list({id(p): p for p in model.parameters()}.values())


def _global_hooks() -> dict[str, dict[Any, Any]]:
    found = {name: getattr(nn.modules.module, name, None) for name in _GLOBAL_HOOKS}
    return {name: dict(hooks) for name, hooks in found.items() if isinstance(hooks, dict)}


@contextlib.contextmanager
def preserved(model: nn.Module) -> Iterator[None]:
    """Run the block; then put the model, its gradients and the random states back as they were."""
    state = ModelState.capture(model)
    state.detach_grads()
    try:
        yield
    finally:
        state.restore()


def needs_copy(model: nn.Module, device: str, dtype: torch.dtype, steps: int) -> bool:
    """Training steps, lazy modules, or a dtype or device other than the model's own, change it:
    work on a copy."""
    if steps > 0:
        return True
    if any(nn.parameter.is_lazy(p) for p in model.parameters()):
        return True  # the first forward materialises LazyLinear & co. and changes their class
    wanted = torch.device(device)
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.device.type != wanted.type or wanted.index not in (None, tensor.device.index):
            return True
        if tensor.is_floating_point() and tensor.dtype != dtype:
            return True
    return False


def working_copy(model: nn.Module) -> nn.Module:
    try:
        return copy.deepcopy(model)
    except Exception as exc:
        raise GradcheckError(
            f"steps, dtype and device work on a copy of the model, and copy.deepcopy failed: "
            f"{type(exc).__name__}: {exc}",
            "call analyze() without steps, and with the model's own dtype and device",
        ) from exc
