"""--versus: both states measured on the same batches; rules that compare a trained state with init.

The checkpoints are trained here: the ReLU MLP of tests/fixtures/trained for 40 SGD steps, at a
learning rate that kills units (5) and at one that does not (0.05).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "trained"
MODEL = str(FIXTURES / "relu_mlp.py")


def _train(path: Path, lr: float, steps: int = 40) -> Path:
    sys.path.insert(0, str(FIXTURES))
    from relu_mlp import ReluMLP, sample_batch

    torch.manual_seed(0)  # the same init gradcheck builds with --seed 0
    model = ReluMLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for i in range(steps):
        torch.manual_seed(1000 + i)
        x, y = sample_batch()
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("versus")
    return {"killed": _train(folder / "killed.pt", lr=5.0), "healthy": _train(folder / "healthy.pt", lr=0.05)}


def _doc(cli, *args: str) -> dict:
    result = cli("analyze", MODEL, *args, "--format", "json")
    assert result.exit_code in (0, 1), result
    return json.loads(result.stdout)


def test_units_killed_by_training_were_alive_at_init(cli, checkpoints: dict[str, Path]) -> None:
    doc = _doc(cli, "--weights", str(checkpoints["killed"]), "--versus", "init")
    acts = {a["name"]: a for a in doc["versus"]["activations"]}
    now, at_init = acts["act2"]["dead_fraction"]
    assert at_init == 0.0 and now > 0.5  # alive at init, mostly dead after training
    finding = next(f for f in doc["findings"] if f["id"] == "units-died-in-training")
    assert finding["layers"][0] == "fc2"  # the layer feeding the activation
    evidence = finding["evidence"]
    assert evidence["reference"] == "init" and evidence["dead_at_reference"][0] == 0.0
    assert evidence["dead_now"][0] == pytest.approx(now, abs=1e-3)
    # Weight norms grew by several times: the rule compares each with its own init norm.
    growth = {
        layer["name"]: layer["weight_norm"][0] / layer["weight_norm"][1] for layer in doc["versus"]["layers"]
    }
    grown = next(f for f in doc["findings"] if f["id"] == "weight-norm-change")["evidence"]["grown"]
    assert grown and all(growth[name] > 5 for name in grown)
    # The reference state really is the model as built: its loss is that of an untrained net (~log 5).
    assert doc["versus"]["loss"][1] == pytest.approx(1.6, abs=0.15)


def test_the_healthy_twin_keeps_its_units(cli, checkpoints: dict[str, Path]) -> None:
    doc = _doc(cli, "--weights", str(checkpoints["healthy"]), "--versus", "init")
    ids = {f["id"] for f in doc["findings"]}
    assert not ids & {"units-died-in-training", "weight-norm-change", "dead-units"}
    assert all(a["dead_fraction"] == [0.0, 0.0] for a in doc["versus"]["activations"])


def test_versus_another_checkpoint_and_every_format(cli, checkpoints: dict[str, Path]) -> None:
    args = (
        "--weights",
        str(checkpoints["killed"]),
        "--versus",
        str(checkpoints["healthy"]),
        "--batches",
        "1",
    )
    doc = _doc(cli, *args)
    assert doc["versus"]["reference"] == str(checkpoints["healthy"])
    layer = doc["versus"]["layers"][0]
    assert set(layer) == {"name", "grad_norm", "grad_weight_ratio", "weight_norm"}
    assert layer["weight_norm"][0] != layer["weight_norm"][1]
    for fmt, marker in (("rich", "at init"), ("markdown", "| layer |"), ("html", "<table>")):
        result = cli(
            "analyze",
            MODEL,
            "--weights",
            str(checkpoints["killed"]),
            "--versus",
            "init",
            "--batches",
            "1",
            "--format",
            fmt,
        )
        assert result.exit_code in (0, 1), result
        assert "versus init" in result.stdout and marker in result.stdout, fmt


def test_versus_leaves_the_measured_state_as_it_was(cli, checkpoints: dict[str, Path]) -> None:
    alone = _doc(cli, "--weights", str(checkpoints["killed"]), "--batches", "1")
    paired = _doc(cli, "--weights", str(checkpoints["killed"]), "--batches", "1", "--versus", "init")
    for a, b in zip(alone["layers"], paired["layers"], strict=True):
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-6)
        assert b["weight_norm"] == pytest.approx(
            paired["versus"]["layers"][a["index"]]["weight_norm"][0], rel=1e-6
        )


def test_update_ratio_far_above_the_healthy_band(cli) -> None:
    doc = _doc(cli, "--steps", "5", "--lr", "2", "--batches", "1")
    finding = next(f for f in doc["findings"] if f["id"] == "update-ratio")
    medians = dict(zip(finding["layers"], finding["evidence"]["median_ratio"], strict=True))
    assert medians and all(r > 0.1 for r in medians.values())
    assert finding["evidence"]["suggested_lr"] < 2
    quiet = _doc(cli, "--steps", "5", "--lr", "0.05", "--batches", "1")
    assert not [f for f in quiet["findings"] if f["id"] == "update-ratio"]
