"""GradientMonitor inside a training loop: measures every N steps, never changes training."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from gradcheck_cli import GradientMonitor
from gradcheck_cli.records.findings import Finding


def model_with_state() -> nn.Module:
    """Dropout (uses the RNG), BatchNorm (running stats) and a frozen-in-eval submodule."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 16), nn.Tanh()
    )
    model.append(nn.Linear(16, 4))
    model[1].eval()  # a user's frozen BatchNorm: the monitor must not switch it back to train
    return model


def deep_sigmoid() -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for i in range(12):
        layers += [nn.Linear(8 if i == 0 else 16, 16), nn.Sigmoid()]
    return nn.Sequential(*layers, nn.Linear(16, 4))


def train(model: nn.Module, steps: int, monitor: GradientMonitor | None = None) -> list[torch.Tensor]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(3)
    torch.manual_seed(5)  # dropout masks
    for _ in range(steps):
        x, y = torch.randn(8, 8, generator=generator), torch.randint(0, 4, (8,), generator=generator)
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        if monitor is not None:
            monitor.step(loss)
        optimizer.step()
    return [t.detach().clone() for t in [*model.parameters(), *model.buffers()]]


def hooks_on(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("every", [1, 3])
def test_training_with_the_monitor_gives_identical_parameters(every: int, tmp_path: Path) -> None:
    bare = train(model_with_state(), steps=7)
    model = model_with_state()
    with GradientMonitor(model, every=every, callback=None, jsonl=tmp_path / "m.jsonl") as monitor:
        watched = train(model, steps=7, monitor=monitor)
    assert len(monitor.history) == math.ceil(7 / every)
    assert all(torch.equal(a, b) for a, b in zip(bare, watched, strict=True))
    assert not model[1].training and model[0].training


def test_measures_every_n_steps_with_bounded_history() -> None:
    model = model_with_state()
    monitor = GradientMonitor(model, every=4, history=2, callback=None)
    train(model, steps=13, monitor=monitor)
    assert [record.step for record in monitor.history] == [8, 12]
    assert monitor.last is not None and monitor.last.step == 12
    monitor.close()


def test_hooks_only_on_measured_steps_and_none_after_close() -> None:
    model = model_with_state()
    monitor = GradientMonitor(model, every=5, callback=None)
    assert hooks_on(model) > 0  # step 0 is measured: armed from the start
    train(model, steps=1, monitor=monitor)
    assert hooks_on(model) == 0  # steps 1..4 run bare
    train(model, steps=3, monitor=monitor)
    assert hooks_on(model) == 0
    train(model, steps=1, monitor=monitor)
    assert hooks_on(model) > 0  # armed for step 5
    monitor.close()
    assert hooks_on(model) == 0
    train(model, steps=10, monitor=monitor)  # steps after close() re-attach nothing
    assert hooks_on(model) == 0 and monitor.last is not None and monitor.last.step == 0


def test_statistics_are_those_of_the_step_measured() -> None:
    model = model_with_state()
    monitor = GradientMonitor(model, every=1, callback=None)
    x, y = torch.randn(8, 8), torch.randint(0, 4, (8,))
    nn.functional.cross_entropy(model(x), y).backward()
    monitor.step()
    monitor.close()
    assert monitor.last is not None
    stats = {row.stats.name: row.stats for row in monitor.last.report.layers}
    for name in ("0", "4", "6"):
        layer = model.get_submodule(name)
        grads = torch.cat([layer.weight.grad.flatten(), layer.bias.grad.flatten()])
        assert stats[name].grad_norm == pytest.approx(float(grads.norm()), rel=1e-5)


def test_new_findings_go_to_the_callback_once(tmp_path: Path) -> None:
    seen: list[tuple[int, tuple[Finding, ...]]] = []
    model = deep_sigmoid()
    path = tmp_path / "findings.jsonl"
    with GradientMonitor(model, every=2, callback=lambda s, f: seen.append((s, f)), jsonl=path) as monitor:
        train(model, steps=6, monitor=monitor)
    assert [step for step, _ in seen] == [0]  # the same finding on steps 2 and 4 is not repeated
    assert "vanishing-gradients" in {f.id for f in seen[0][1]}
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["step"] for line in lines] == [0, 2, 4]
    assert all(line["schema"] == "gradcheck.report/1" for line in lines)
    assert "vanishing-gradients" in {f["id"] for f in lines[-1]["findings"]}


def test_default_callback_is_one_warning_line_on_stderr(capsys: Any) -> None:
    model = deep_sigmoid()
    with GradientMonitor(model, every=10) as monitor:
        train(model, steps=1, monitor=monitor)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "gradcheck step 0: error vanishing-gradients" in captured.err


def test_every_must_be_positive() -> None:
    with pytest.raises(ValueError, match="every"):
        GradientMonitor(nn.Linear(2, 2), every=0)
