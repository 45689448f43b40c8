"""Recurrent cells stepped by a Python loop are measured through time, call by call."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from gradcheck_cli.measure import through_time


class CellLoop(nn.Module):
    def __init__(self, cell: nn.Module, hidden: int) -> None:
        super().__init__()
        self.cell, self.hidden = cell, hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (batch, steps, features)
        h = x.new_zeros(x.shape[0], self.hidden)
        state = (h, h.clone()) if isinstance(self.cell, nn.LSTMCell) else h
        for t in range(x.shape[1]):
            state = self.cell(x[:, t], state)
        return state[0] if isinstance(state, tuple) else state


@pytest.mark.parametrize("a", [0.8, 1.1])
def test_linear_cell_recurrence_gives_a_to_the_steps_back(a: float) -> None:
    # relu on positive values is the identity: h_t = a*h_{t-1} + x_t exactly.
    cell = nn.RNNCell(4, 4, nonlinearity="relu")
    with torch.no_grad():
        cell.weight_hh.copy_(a * torch.eye(4))
        cell.weight_ih.copy_(torch.eye(4))
        cell.bias_hh.zero_()
        cell.bias_ih.zero_()
    model = CellLoop(cell, 4)
    x = torch.rand(3, 30, 4) + 0.1
    (tt,) = through_time.measure(model, lambda: model(x), seed=0, sources={})
    assert tt.type == "RNNCell" and tt.steps == 30
    for t, value in enumerate(tt.curve):
        assert value == pytest.approx(a ** (29 - t), rel=1e-4)


def test_vanilla_cell_loop_vanishes_and_the_fix_names_cells(tmp_path, cli) -> None:
    model_file = tmp_path / "cell_model.py"
    model_file.write_text(
        "import torch\nfrom torch import nn\n\n"
        "class Loop(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.cell = nn.RNNCell(8, 32)\n"
        "        self.head = nn.Linear(32, 5)\n\n"
        "    def forward(self, x):\n"
        "        h = x.new_zeros(x.shape[0], 32)\n"
        "        for t in range(x.shape[1]):\n"
        "            h = self.cell(x[:, t], h)\n"
        "        return self.head(h)\n\n"
        "def sample_batch():\n"
        "    return torch.randn(4, 100, 8)\n"
    )
    result = cli("analyze", str(model_file), "--format", "json", "--batches", "1")
    doc = json.loads(result.stdout)
    finding = next(f for f in doc["findings"] if f["id"] == "vanishing-through-time")
    assert finding["severity"] == "error" and doc["through_time"]["steps"] == 100
    fix = finding["suggestions"][0]
    assert "nn.RNNCell(8, 32)" in fix["text"] and "nn.GRUCell(8, 32)" in fix["text"]
    assert "bias_ih[32:64]" in fix["text"]
    assert fix["where"].endswith("cell_model.py:7")


def test_gated_cell_with_gate_bias_keeps_its_gradient() -> None:
    cell = nn.GRUCell(8, 32)
    hidden = 32
    with torch.no_grad():
        cell.bias_ih[hidden : 2 * hidden].fill_(3.0)
        cell.bias_hh[hidden : 2 * hidden].zero_()
    model = CellLoop(cell, hidden)
    x = torch.randn(4, 100, 8)
    (tt,) = through_time.measure(model, lambda: model(x), seed=0, sources={})
    assert tt.horizon > 50


def test_try_fixes_swaps_an_rnn_cell_for_a_gru_cell_in_the_users_loop(tmp_path, cli) -> None:
    model_file = tmp_path / "cell_loop.py"
    model_file.write_text(
        "import torch\nfrom torch import nn\n\n"
        "class Loop(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.cell = nn.RNNCell(8, 32)\n\n"
        "    def forward(self, x):\n"
        "        h = x.new_zeros(x.shape[0], 32)\n"
        "        for t in range(x.shape[1]):\n"
        "            h = self.cell(x[:, t], h)\n"
        "        return h\n\n"
        "def sample_batch():\n"
        "    return torch.randn(4, 100, 8)\n"
    )
    doc = json.loads(
        cli("analyze", str(model_file), "--try-fixes", "--batches", "1", "--format", "json").stdout
    )
    gru = next(f for f in doc["fixes"] if f["fix"] == "gru")
    assert gru["applied"] and "vanishing-through-time" in gru["cleared"]
    assert gru["after"]["ratio"] > 100 * max(gru["before"]["ratio"], 1e-30)
    lstm = next(f for f in doc["fixes"] if f["fix"] == "lstm")
    assert not lstm["applied"] and "(h, c)" in lstm["note"]
