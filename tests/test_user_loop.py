"""--steps runs the user's own loop: `train_step(model, batch, optimizer)` and the optimizer and
scheduler factories of the model file; the report says which loop ran, and a learning rate that
a per-batch StepLR drove to nothing is `training-stalled`, checked against a plain PyTorch loop."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import torch
from torch import nn

MODEL = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.fc2 = nn.Linear(6, 16), nn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))

def sample_batch():
    return torch.randn(16, 6), torch.randint(0, 3, (16,))

def build_optimizer(params):
    return torch.optim.SGD(params, lr=0.1)
"""

USER_STEP = """
calls = 0

def build_scheduler(optimizer):
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.01)

def train_step(model, batch, optimizer, scheduler):
    global calls
    x, y = batch
    optimizer.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    calls += 1
    if {per_batch} or calls % 100 == 0:
        scheduler.step()
    return loss
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "net.py"
    path.write_text(textwrap.dedent(MODEL + text), encoding="utf-8")
    return str(path)


def analyze(cli, path: str, steps: int = 30) -> dict:
    result = cli("analyze", path, "--steps", str(steps), "--batches", "2", "--format", "json")
    assert result.exit_code in (0, 1), result
    return json.loads(result.stdout)


def plain_lrs(steps: int) -> list[float]:
    """The rate each step runs with when the scheduler is stepped after every batch."""
    optimizer = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.01)
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def test_train_step_runs_as_the_users_loop_and_a_per_batch_steplr_stalls(cli, tmp_path: Path) -> None:
    doc = analyze(cli, write(tmp_path, USER_STEP.format(per_batch=True)))
    training = doc["training"]
    assert training["loop"] == "train_step() in the model file"
    lrs = plain_lrs(30)
    assert training["lrs"] == [lr for lr in lrs]
    found = next(f for f in doc["findings"] if f["id"] == "training-stalled")
    expected = next(i for i, lr in enumerate(lrs) if lr < 1e-3 * lrs[0]) + 1
    assert found["evidence"]["lr_collapse_step"] == expected
    assert found["evidence"]["loop"] == "train_step() in the model file"
    # the stalled steps are those whose update was exactly zero in every layer
    ratios = training["update_ratios"]
    first = found["evidence"]["step"]
    assert all(r[i] == 0 for r in ratios.values() for i in range(first - 1, 30))
    assert any(r[first - 2] != 0 for r in ratios.values())


def test_train_step_stepping_the_scheduler_per_epoch_trains(cli, tmp_path: Path) -> None:
    doc = analyze(cli, write(tmp_path, USER_STEP.format(per_batch=False)))
    assert doc["training"]["loop"] == "train_step() in the model file"
    assert "training-stalled" not in {f["id"] for f in doc["findings"]}
    assert len(set(doc["training"]["lrs"])) == 1


def test_gradchecks_loop_steps_the_files_scheduler_factory(cli, tmp_path: Path) -> None:
    factory = """
def build_scheduler(optimizer):
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.01)
"""
    doc = analyze(cli, write(tmp_path, factory))
    training = doc["training"]
    assert training["loop"] == "gradcheck's loop" and training["scheduler"] == "StepLR"
    assert training["lrs"] == plain_lrs(30)
    assert "training-stalled" in {f["id"] for f in doc["findings"]}


def test_the_terminal_report_says_which_loop_ran(cli, tmp_path: Path) -> None:
    path = write(tmp_path, USER_STEP.format(per_batch=False))
    result = cli("analyze", path, "--steps", "5", "--batches", "2")
    assert "by train_step() in the model file" in " ".join(result.stdout.split())


def test_a_train_step_that_never_steps_the_optimizer_is_a_clear_error(cli, tmp_path: Path) -> None:
    path = write(tmp_path, "\ndef train_step(model, batch, optimizer):\n    return 0.0\n")
    result = cli("analyze", path, "--steps", "3")
    assert result.exit_code == 2
    assert "did not call optimizer.step()" in result.stderr
