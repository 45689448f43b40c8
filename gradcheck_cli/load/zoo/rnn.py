"""Built-in recurrent classifiers over long sequences: loss on the last step."""

from __future__ import annotations

import torch
from torch import nn

from gradcheck_cli.load.cell_gates import set_gate_bias

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
        from gradcheck_cli.records.errors import ConfigError

        raise ConfigError(f"unknown cell {cell!r}", "one of rnn, gru, lstm")
    model = SequenceClassifier(cell, input_size, hidden, layers, classes)
    if gate_bias and cell != "rnn":
        set_gate_bias(model.rnn, gate_bias)
    return model
