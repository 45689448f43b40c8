"""GradcheckCallback in real PyTorch Lightning (CPU): statistics reach the logger, a run that goes
non-finite is caught at the right step and layer, and training is bit-identical with the callback."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

pl = pytest.importorskip("lightning.pytorch")

from gradcheck_cli.monitor.integrations.lightning import GradcheckCallback, GradcheckFindingError  # noqa: E402
from tests.growing import GoesNonfinite  # noqa: E402

STEPS = 24


class Wrapped(pl.LightningModule):
    """A LightningModule around one of our own nn.Modules."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self.model(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self.model(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


def small_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 4))


def loader() -> torch.utils.data.DataLoader:
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(
        torch.randn(8 * STEPS, 8, generator=g), torch.randint(0, 4, (8 * STEPS,), generator=g)
    )
    return torch.utils.data.DataLoader(data, batch_size=8, shuffle=False)


def fit(
    model: nn.Module, tmp: Path, callback: GradcheckCallback | None, validate: bool = False
) -> pl.Trainer:
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=STEPS,
        logger=pl.loggers.CSVLogger(tmp, name="run"),
        callbacks=[callback] if callback else [],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=2 if validate else 0,
        limit_val_batches=2 if validate else 0,
        val_check_interval=8 if validate else None,
    )
    trainer.fit(Wrapped(model), loader(), loader() if validate else None)
    return trainer


def metric_rows(tmp: Path) -> list[dict[str, str]]:
    (path,) = tmp.glob("run/version_*/metrics.csv")
    with path.open() as f:
        return list(csv.DictReader(f))


def test_statistics_arrive_in_the_csv_logger(tmp_path: Path) -> None:
    callback = GradcheckCallback(every=8)
    fit(small_mlp(), tmp_path, callback, validate=True)
    rows = [r for r in metric_rows(tmp_path) if r.get("gradcheck/grad_norm/model.0")]
    assert [int(r["step"]) for r in rows] == [0, 8, 16]
    history = {rec.step: rec for rec in callback.monitor.history}
    for row in rows:
        layers = {lr.stats.name: lr.stats for lr in history[int(row["step"])].report.layers}
        for name in ("model.0", "model.2", "model.4"):
            assert float(row[f"gradcheck/grad_norm/{name}"]) == pytest.approx(
                layers[name].grad_norm, rel=1e-5
            )
        assert "gradcheck/dead_fraction/model.1" in row and "gradcheck/saturated_fraction/model.3" in row
    # validation forwards (sanity check, every 8 steps) ran with the hooks detached
    assert all(rec.report.layers[0].stats.calls == 1 for rec in callback.monitor.history)


def test_training_is_bit_identical_with_the_callback(tmp_path: Path) -> None:
    bare, watched = small_mlp(), small_mlp()
    fit(bare, tmp_path / "bare", None)
    fit(watched, tmp_path / "watched", GradcheckCallback(every=1))
    for a, b in zip(bare.state_dict().values(), watched.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_a_run_going_nonfinite_is_caught_at_its_step_and_first_layer(tmp_path: Path) -> None:
    callback = GradcheckCallback(every=1)
    fit(GoesNonfinite(at=12), tmp_path, callback)
    findings = {f.id: f for f in callback.monitor.last.report.findings}
    first = findings["nonfinite-first-layer"].evidence
    assert first["first_step"] == 12 and first["first_layer"] == "model.enc"
    assert first["loss_nonfinite_step"] == 13 and first["steps_before_loss"] == 1
    assert math.isfinite(first["loss_at_first_step"])


def test_fail_on_error_stops_training_or_raises(tmp_path: Path) -> None:
    trainer = fit(GoesNonfinite(at=12), tmp_path / "stop", GradcheckCallback(every=1, fail_on="error"))
    assert trainer.global_step == 13  # step 12's batch completes, then the trainer stops
    with pytest.raises(GradcheckFindingError, match="step 12"):
        fit(
            GoesNonfinite(at=12),
            tmp_path / "raise",
            GradcheckCallback(every=1, fail_on="error", action="raise"),
        )


DDP_SCRIPT = Path(__file__).with_name("lightning_ddp_run.py")


@pytest.mark.slow
def test_ddp_on_cpu_gives_one_report(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(DDP_SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = (tmp_path / "run.jsonl").read_text().splitlines()
    assert len(lines) == 3  # steps 0, 4, 8 from rank 0 only
    assert done.stderr.count("gradcheck step 0:") == 1
    assert len(list(tmp_path.glob("csv/run/version_*/metrics.csv"))) == 1


class MissesALayer(Wrapped):
    """configure_optimizers builds the optimizer from two of the three layers, with a scheduler."""

    def configure_optimizers(self) -> Any:
        params = [*self.model[0].parameters(), *self.model[4].parameters()]
        optimizer = torch.optim.SGD(params, lr=0.05)
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, step_size=100)]


def test_the_callback_records_the_loop_and_names_a_layer_left_out(tmp_path: Path) -> None:
    model = small_mlp()
    initial = model[2].weight.detach().clone()
    callback = GradcheckCallback(every=4)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=STEPS,
        logger=False,
        callbacks=[callback],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(MissesALayer(model), loader())
    loop = callback.monitor.last.stats.loop
    assert loop is not None and loop.optimizer == "SGD" and loop.scheduler == "StepLR"
    assert loop.lrs == (0.05,) and loop.layers["model.2"].group is None
    assert torch.equal(model[2].weight, initial)  # plain PyTorch: never updated
    found = next(f for f in callback.monitor.last.report.findings if f.id == "not-in-optimizer")
    assert found.layers == ("model.2",)
