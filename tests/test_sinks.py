"""The monitor's sinks against the real libraries: TensorBoard event files, an offline W&B run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from gradcheck_cli import GradientMonitor
from gradcheck_cli.monitor.sinks import scalar_metrics

pytest.importorskip("tensorboard")


def deep_sigmoid() -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for i in range(8):
        layers += [nn.Linear(8 if i == 0 else 16, 16), nn.Sigmoid()]
    return nn.Sequential(*layers, nn.Linear(16, 4), nn.ReLU(), nn.Linear(4, 4))


def train(model: nn.Module, monitor: GradientMonitor, steps: int = 12) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x, y = torch.randn(8, 8, generator=generator), torch.randint(0, 4, (8,), generator=generator)
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        monitor.step(loss)
        optimizer.step()


def test_tensorboard_scalars_and_findings_text(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from gradcheck_cli.monitor.sinks.tensorboard import TensorBoardSink

    model = deep_sigmoid()
    with GradientMonitor(model, every=4, callback=None, sinks=[TensorBoardSink(log_dir=tmp_path)]) as monitor:
        train(model, monitor)
    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert monitor.last is not None
    expected = set(scalar_metrics(monitor.last.stats, monitor.last.report.findings))
    assert tags == expected
    assert {"gradcheck/grad_norm/0", "gradcheck/grad_weight_ratio/16", "gradcheck/findings/error"} <= tags
    assert any(t.startswith("gradcheck/saturated_fraction/") for t in tags)
    assert any(t.startswith("gradcheck/dead_fraction/") for t in tags)
    first_layer = events.Scalars("gradcheck/grad_norm/0")
    assert [e.step for e in first_layer] == [0, 4, 8]
    measured = {
        r.step: {row.stats.name: row.stats.grad_norm for row in r.report.layers} for r in monitor.history
    }
    for event in first_layer:
        assert event.value == pytest.approx(measured[event.step]["0"], rel=1e-6)
    text = events.Tensors("gradcheck/findings/text_summary")
    assert text and b"vanishing-gradients" in text[0].tensor_proto.string_val[0]


def test_wandb_offline_run_gets_the_same_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wandb = pytest.importorskip("wandb")
    from gradcheck_cli.monitor.sinks.wandb import WandbSink
    from tests.wandb_records import history_rows

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    quiet = wandb.Settings(
        console="off",
        save_code=False,
        x_disable_stats=True,
        x_disable_meta=True,
        x_disable_machine_info=True,
        x_save_requirements=False,
    )
    run = wandb.init(project="gradcheck-test", dir=str(tmp_path), mode="offline", settings=quiet)
    try:
        model = deep_sigmoid()
        with GradientMonitor(model, every=4, callback=None, sinks=[WandbSink(run)]) as monitor:
            train(model, monitor)
    finally:
        run.finish()
        wandb.teardown()  # stops wandb-core, which closes (and so completes) the run file
    rows = history_rows(tmp_path)
    logs = "\n".join(p.read_text()[-3000:] for p in tmp_path.glob("wandb/offline-run-*/logs/*.log"))
    assert rows, logs
    assert [row["gradcheck/step"] for row in rows] == [0, 4, 8]
    for row, record in zip(rows, monitor.history, strict=True):
        expected = scalar_metrics(record.stats, record.report.findings)
        for key, value in expected.items():
            assert row[key] == pytest.approx(value, rel=1e-6) or (math.isnan(value) and row[key] is None)
    assert rows[0]["gradcheck/new_findings/_type"] == "table-file"
    assert rows[0]["gradcheck/new_findings/nrows"] == len(monitor.history[0].report.findings)
    assert "gradcheck/new_findings/_type" not in rows[1]  # the same findings are not logged twice
