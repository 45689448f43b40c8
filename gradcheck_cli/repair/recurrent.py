"""gru / lstm: replace each vanilla nn.RNN with a gated cell of the same sizes.

The gate that keeps memory gets bias 3 (GRU's update gate z, LSTM's forget gate), as the
finding's suggestion says: at PyTorch's default init a gated cell still forgets within
about 20 steps. The LSTM keeps nn.RNN's interface, so the model's forward is unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gradcheck_cli.load.cell_gates import set_gate_bias
from gradcheck_cli.repair.base import (
    Change,
    NotApplicable,
    RepairContext,
    like,
    replace_module,
    summarize_names,
)

GATE_BIAS = 3.0


class RNNStateLSTM(nn.LSTM):
    """nn.LSTM behind nn.RNN's interface: an h0 passed in gets c0 = 0, and only h_n comes back.

    Code written for nn.RNN (`out, h = self.rnn(x, h0)`, then `h[-1]`) keeps working; handing
    it LSTM's (h_n, c_n) tuple would make `h[-1]` silently read the cell state.
    """

    def forward(self, input: Any, hx: Any = None) -> tuple[Any, torch.Tensor]:  # type: ignore[override]
        if isinstance(hx, torch.Tensor):
            hx = (hx, torch.zeros_like(hx))
        output, (h_n, _c_n) = super().forward(input, hx)
        return output, h_n


def to_gru(model: nn.Module, context: RepairContext) -> Change:
    return _replace_rnns(model, "gru")


def to_lstm(model: nn.Module, context: RepairContext) -> Change:
    return _replace_rnns(model, "lstm")


def _replace_rnns(model: nn.Module, cell: str) -> Change:
    cells = [(name, m) for name, m in model.named_modules() if type(m) is nn.RNNCell]
    if cell == "gru" and cells and not any(type(m) is nn.RNN for m in model.modules()):
        return _replace_cells(model, cells)
    targets = [(name, m) for name, m in model.named_modules() if type(m) is nn.RNN]
    if not targets:
        why = "an LSTMCell's state is (h, c), which a loop written for nn.RNNCell does not carry"
        raise NotApplicable(
            f"no nn.RNN module to replace ({why})" if cells else "no nn.RNN or nn.RNNCell module to replace"
        )
    for name, old in targets:
        model = replace_module(model, name, gated_like(old, cell))
    old = targets[0][1]
    gate = "update-gate" if cell == "gru" else "forget-gate"
    note = (
        f"replaced nn.RNN({_signature(old)}) with nn.{cell.upper()} of the same sizes, "
        f"{gate} bias {GATE_BIAS:g}"
    )
    if cell == "lstm":
        note += "; a passed h0 gets c0 = 0 and only h_n is returned, as nn.RNN did"
    return Change(model=model, where=summarize_names([name or "model" for name, _ in targets]), note=note)


def _replace_cells(model: nn.Module, cells: list[tuple[str, nn.RNNCell]]) -> Change:
    """nn.RNNCell -> nn.GRUCell: the same call, cell(x_t, h) -> h, so the user's loop is unchanged."""
    for name, old in cells:
        new = like(nn.GRUCell(old.input_size, old.hidden_size, bias=old.bias), old)
        set_gate_bias(new, GATE_BIAS)
        model = replace_module(model, name, new)
    first = cells[0][1]
    note = (
        f"replaced nn.RNNCell({first.input_size}, {first.hidden_size}) with nn.GRUCell of the same "
        f"sizes, update-gate bias {GATE_BIAS:g}"
    )
    return Change(model=model, where=summarize_names([name for name, _ in cells]), note=note)


def gated_like(old: nn.RNN, cell: str) -> nn.RNNBase:
    kind: type[nn.GRU] | type[RNNStateLSTM] = nn.GRU if cell == "gru" else RNNStateLSTM
    new = kind(
        old.input_size,
        old.hidden_size,
        num_layers=old.num_layers,
        bias=old.bias,
        batch_first=old.batch_first,
        dropout=old.dropout,
        bidirectional=old.bidirectional,
    )
    new = like(new, old)
    set_gate_bias(new, GATE_BIAS)
    return new


def _signature(rnn: nn.RNN) -> str:
    text = f"{rnn.input_size}, {rnn.hidden_size}"
    if rnn.num_layers != 1:
        text += f", num_layers={rnn.num_layers}"
    if rnn.batch_first:
        text += ", batch_first=True"
    if rnn.bidirectional:
        text += ", bidirectional=True"
    return text
