"""The gate of a GRU or LSTM that keeps the state (GRU update gate z, LSTM forget gate):
reading its bias for advice, setting it for builtins and fixes.

Both are the second chunk (rows H..2H) of the stacked gate biases, in every layer.
"""

from __future__ import annotations

import torch
from torch import nn


def set_gate_bias(rnn: nn.RNNBase | nn.RNNCellBase, value: float) -> None:
    """Bias the gate that keeps memory: GRU's update gate z (h' = (1-z)n + zh), LSTM's forget gate.

    Both are the second chunk of the stacked gate biases, in every layer.
    """
    hidden = rnn.hidden_size
    with torch.no_grad():
        for name, param in rnn.named_parameters():
            if name.startswith("bias_ih"):
                param[hidden : 2 * hidden].fill_(value)
            elif name.startswith("bias_hh"):
                param[hidden : 2 * hidden].zero_()


def gate_bias(module: nn.Module) -> float | None:
    """Mean bias of the gate that keeps the state (GRU update, LSTM forget: rows H..2H of
    bias_ih + bias_hh, first layer), so advice does not ask for a bias already set."""
    kind = type(module).__name__
    if not kind.startswith(("GRU", "LSTM")):
        return None
    size = int(getattr(module, "hidden_size", 0))
    total = 0.0
    for name in ("bias_ih", "bias_hh", "bias_ih_l0", "bias_hh_l0"):
        bias = getattr(module, name, None)
        if isinstance(bias, torch.Tensor) and bias.numel() >= 2 * size > 0:
            total += float(bias.detach()[size : 2 * size].float().mean())
    return total
