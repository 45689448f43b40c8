"""Gate activations of nn.LSTM / nn.GRU layers, recomputed from their weights on the first batch.

The fused kernels do not expose gate values, so the input each recurrent module receives is
captured by a forward pre-hook and the gates are recomputed step by step with the module's
own weights (forward direction; every stacked layer, each fed the previous layer's outputs).
A gate is saturated where its sigmoid (or tanh) sits in a flat tail, the same tails the
activation statistics use: the gradient through it is under 5% of its maximum.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from gradcheck_cli.measure.activations import SIGMOID_TAIL, TANH_TAIL
from gradcheck_cli.records.stats import CellGateSaturation

LSTM_GATES = ("input", "forget", "cell", "output")
GRU_GATES = ("reset", "update", "new")


def measure_cell_gates(model: nn.Module, run_forward: Callable[[], Any]) -> tuple[CellGateSaturation, ...]:
    modules = {name: m for name, m in model.named_modules() if type(m) in (nn.LSTM, nn.GRU)}
    modules = {n: m for n, m in modules.items() if getattr(m, "proj_size", 0) == 0}
    if not modules:
        return ()
    seen: dict[str, tuple[torch.Tensor, Any]] = {}
    handles = [m.register_forward_pre_hook(_capture(name, seen)) for name, m in modules.items()]
    try:
        with torch.no_grad():
            run_forward()
    finally:
        for handle in handles:
            handle.remove()
    with torch.no_grad():
        return tuple(_module_gates(name, modules[name], *seen[name]) for name in modules if name in seen)


def _capture(name: str, seen: dict[str, tuple[torch.Tensor, Any]]) -> Callable[..., None]:
    def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
        if name not in seen and args and isinstance(args[0], torch.Tensor):
            seen[name] = (args[0].detach(), args[1] if len(args) > 1 else None)

    return hook


def _module_gates(name: str, rnn: nn.RNNBase, x: torch.Tensor, hx: Any) -> CellGateSaturation:
    lstm = isinstance(rnn, nn.LSTM)
    seq = x.float()
    if seq.dim() == 2:
        seq = seq.unsqueeze(1)
    elif rnn.batch_first:
        seq = seq.transpose(0, 1)
    names = LSTM_GATES if lstm else GRU_GATES
    tails = torch.zeros(len(names), device=seq.device)
    total = 0
    for layer in range(rnn.num_layers):
        seq, counts = _layer(rnn, layer, seq, _initial(hx, layer, lstm, rnn, seq), lstm)
        tails += counts
        total += seq.numel()
    fractions = (tails / max(total, 1)).tolist()
    return CellGateSaturation(
        module=name,
        type=type(rnn).__name__,
        layers=rnn.num_layers,
        gates=dict(zip(names, fractions, strict=True)),
    )


def _initial(hx: Any, layer: int, lstm: bool, rnn: nn.RNNBase, seq: torch.Tensor) -> tuple[torch.Tensor, ...]:
    directions = 2 if rnn.bidirectional else 1
    zeros = seq.new_zeros(seq.shape[1], rnn.hidden_size)
    if hx is None:
        return (zeros, zeros) if lstm else (zeros,)
    states = hx if lstm else (hx,)
    picked = tuple(
        s[layer * directions].float() if s.dim() == 3 else s[layer * directions].unsqueeze(0).float()
        for s in states
    )
    return picked


def _layer(
    rnn: nn.RNNBase, layer: int, seq: torch.Tensor, state: tuple[torch.Tensor, ...], lstm: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    w_ih, w_hh = getattr(rnn, f"weight_ih_l{layer}").float(), getattr(rnn, f"weight_hh_l{layer}").float()
    b_ih = getattr(rnn, f"bias_ih_l{layer}", None)
    b_hh = getattr(rnn, f"bias_hh_l{layer}", None)
    b_ih = b_ih.float() if b_ih is not None else torch.zeros(w_ih.shape[0], device=seq.device)
    b_hh = b_hh.float() if b_hh is not None else torch.zeros(w_hh.shape[0], device=seq.device)
    x_part = seq @ w_ih.T + b_ih  # all steps at once: (T, B, gates*H)
    step = _lstm_step if lstm else _gru_step
    outputs, counts = [], torch.zeros(4 if lstm else 3, device=seq.device)
    for t in range(seq.shape[0]):
        state, tails = step(x_part[t], state, w_hh, b_hh)
        counts += tails
        outputs.append(state[0])
    return torch.stack(outputs), counts


def _sig_tail(s: torch.Tensor) -> torch.Tensor:
    return (s - 0.5).abs().gt(0.5 - SIGMOID_TAIL).sum()


def _tanh_tail(y: torch.Tensor) -> torch.Tensor:
    return y.abs().gt(TANH_TAIL).sum()


def _lstm_step(
    x_part: torch.Tensor, state: tuple[torch.Tensor, ...], w_hh: torch.Tensor, b_hh: torch.Tensor
) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    h, c = state
    i, f, g, o = (x_part + h @ w_hh.T + b_hh).chunk(4, dim=-1)
    i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
    c = f * c + i * g
    tails = torch.stack([_sig_tail(i), _sig_tail(f), _tanh_tail(g), _sig_tail(o)]).float()
    return (o * c.tanh(), c), tails


def _gru_step(
    x_part: torch.Tensor, state: tuple[torch.Tensor, ...], w_hh: torch.Tensor, b_hh: torch.Tensor
) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    (h,) = state
    x_r, x_z, x_n = x_part.chunk(3, dim=-1)
    h_r, h_z, h_n = (h @ w_hh.T + b_hh).chunk(3, dim=-1)
    r, z = (x_r + h_r).sigmoid(), (x_z + h_z).sigmoid()
    n = (x_n + r * h_n).tanh()
    tails = torch.stack([_sig_tail(r), _sig_tail(z), _tanh_tail(n)]).float()
    return ((1 - z) * n + z * h,), tails
