"""Built-in recurrent classifiers over long sequences: loss on the last step."""

from __future__ import annotations

import torch
from torch import nn

CELLS: dict[str, type[nn.RNN] | type[nn.GRU] | type[nn.LSTM]] = {
    "rnn": nn.RNN,
    "gru": nn.GRU,
    "lstm": nn.LSTM,
}


class SequenceClassifier(nn.Module):
    """A recurrent layer read at its last step, then a linear head."""

    def __init__(self, cell: str, input_size: int, hidden: int, layers: int, classes: int) -> None:
        super().__init__()
        self.rnn = CELLS[cell](input_size, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


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


def recurrent(
    cell: str,
    seq_len: int,
    input_size: int,
    hidden: int,
    layers: int,
    classes: int,
    batch: int,
    gate_bias: float,
) -> nn.Module:
    if cell not in CELLS:
        from gradcheck_cli.errors import ConfigError

        raise ConfigError(f"unknown cell {cell!r}", "one of rnn, gru, lstm")
    model = SequenceClassifier(cell, input_size, hidden, layers, classes)
    if gate_bias and cell != "rnn":
        set_gate_bias(model.rnn, gate_bias)
    return model
