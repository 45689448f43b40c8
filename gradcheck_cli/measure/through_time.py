"""The through-time measurement: a backward pass from a recurrent layer's last step only.

A per-step language-model loss would hide vanishing (every step gets its own gradient),
so this pass backpropagates one fixed random direction of the recurrent layer's output
at the last time step and measures the gradient that reaches each step's input.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from gradcheck_cli.load.cell_gates import gate_bias
from gradcheck_cli.records.stats import SourceRef, ThroughTime

HORIZON_FLOOR = 1e-3


def recurrent_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """nn.RNN/GRU/LSTM layers, and nn.RNNCell/GRUCell/LSTMCell cells that a forward loop steps."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.RNNBase, nn.RNNCellBase))]


def measure(
    model: nn.Module,
    run_forward: Callable[[], Any],
    seed: int,
    sources: dict[str, SourceRef],
) -> tuple[ThroughTime, ...]:
    out = []
    for name, module in recurrent_modules(model):
        if isinstance(module, nn.RNNCellBase):
            curve = _cell_curve(module, run_forward, seed)
        elif isinstance(module, nn.RNNBase):
            curve = _curve(module, run_forward, seed)
        if curve is not None and len(curve) >= 2:
            out.append(summarize(name, module, curve, sources.get(name)))
    return tuple(out)


def _curve(module: nn.RNNBase, run_forward: Callable[[], Any], seed: int) -> list[float] | None:
    captured: dict[str, torch.Tensor] = {}

    def pre_hook(mod: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if "x" in captured or not args or not isinstance(args[0], torch.Tensor) or args[0].dim() != 3:
            return None
        leaf = args[0].detach().requires_grad_(True)
        captured["x"] = leaf
        return (leaf, *args[1:])

    def post_hook(mod: nn.Module, args: Any, output: Any) -> None:
        if "y" not in captured and isinstance(output, tuple) and isinstance(output[0], torch.Tensor):
            captured["y"] = output[0]

    _forward_with_hooks(module, pre_hook, post_hook, run_forward)
    if "x" not in captured or "y" not in captured:
        return None
    x, y = captured["x"], captured["y"]
    time_dim = 1 if module.batch_first else 0
    last = y.select(time_dim, y.shape[time_dim] - 1).float()
    if module.bidirectional:
        # The reverse direction has seen only the last input at the last step: measure the
        # forward direction, whose memory is what reaches back to the first steps.
        last = last[..., : last.shape[-1] // 2]
    generator = torch.Generator().manual_seed(seed)
    direction = torch.randn(last.shape, generator=generator).to(last.device)
    (grad,) = torch.autograd.grad((last * direction).sum(), x, allow_unused=True)
    if grad is None:
        return None
    dims = [d for d in range(grad.dim()) if d != time_dim]
    per_step = torch.linalg.vector_norm(grad.float(), dim=dims).tolist()
    return per_step


def _cell_curve(cell: nn.RNNCellBase, run_forward: Callable[[], Any], seed: int) -> list[float] | None:
    """A cell stepped by a Python loop: each call's input becomes a leaf (the hidden state keeps
    its graph), and the backward pass starts from the last call's hidden state."""
    inputs: list[torch.Tensor] = []
    hidden: list[torch.Tensor] = []

    def pre_hook(mod: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if not args or not isinstance(args[0], torch.Tensor):
            return None
        leaf = args[0].detach().requires_grad_(True)
        inputs.append(leaf)
        return (leaf, *args[1:])

    def post_hook(mod: nn.Module, args: Any, output: Any) -> None:
        hidden.append(output[0] if isinstance(output, tuple) else output)  # LSTMCell gives (h, c)

    _forward_with_hooks(cell, pre_hook, post_hook, run_forward)
    if len(inputs) < 2 or not hidden:
        return None
    last = hidden[-1].float()
    direction = torch.randn(last.shape, generator=torch.Generator().manual_seed(seed)).to(last.device)
    grads = torch.autograd.grad((last * direction).sum(), inputs, allow_unused=True)
    norms = [torch.linalg.vector_norm(g.float()) if g is not None else last.new_zeros(()) for g in grads]
    return torch.stack(norms).tolist()  # one transfer for the whole curve


def _forward_with_hooks(
    module: nn.Module,
    pre_hook: Callable[..., Any],
    post_hook: Callable[..., Any],
    run_forward: Callable[[], Any],
) -> None:
    """One forward pass with both hooks on `module`, removed whatever happens."""
    handles = [module.register_forward_pre_hook(pre_hook), module.register_forward_hook(post_hook)]
    try:
        run_forward()
    finally:
        for handle in handles:
            handle.remove()


def summarize(name: str, module: nn.Module, per_step: list[float], source: SourceRef | None) -> ThroughTime:
    last = per_step[-1]
    curve = [v / last if last > 0 else math.nan for v in per_step]
    return ThroughTime(
        module=name,
        type=type(module).__name__,
        steps=len(curve),
        curve=tuple(curve),
        per_step_factor=per_step_factor(curve),
        horizon=horizon(curve, HORIZON_FLOOR),
        horizon_floor=HORIZON_FLOOR,
        hidden_size=int(getattr(module, "hidden_size", 0)),
        input_size=int(getattr(module, "input_size", 0)),
        num_layers=int(getattr(module, "num_layers", 1)),
        batch_first=bool(getattr(module, "batch_first", False)),
        source=source,
        gate_bias=gate_bias(module),
    )


def horizon(curve: list[float], floor: float) -> int:
    """Steps back from the last over which the gradient stays at or above `floor` of the last's."""
    steps = 0
    for value in reversed(curve[:-1]):
        if not (value >= floor):  # NaN and exact zeros (underflow) end the horizon
            break
        steps += 1
    return steps


def per_step_factor(curve: list[float]) -> float:
    """exp(slope) of log(gradient) against step, fitted by least squares where it is measurable."""
    points = [(t, math.log(v)) for t, v in enumerate(curve) if v > 0 and math.isfinite(v) and v > 1e-35]
    if len(points) < 2:
        return math.nan
    mean_t = sum(t for t, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    cov = sum((t - mean_t) * (y - mean_y) for t, y in points)
    var = sum((t - mean_t) ** 2 for t, _ in points)
    # Going back in time is decreasing t, so the per-step factor is exp(-slope).
    return math.exp(-cov / var) if var else math.nan
