"""--steps trains as the user trains; a run that diverges is diagnosed at the right step and layer.

The checkpoint is trained here (a ReLU MLP on a learnable teacher task); the divergence step and
layer gradcheck reports are checked against this file's own plain PyTorch loop on the same batches.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "trained"
MODEL = str(FIXTURES / "relu_mlp.py")
HIGH_LR, LOW_LR, STEPS, BATCHES = 50.0, 0.05, 30, 3


def _relu_mlp() -> nn.Module:
    sys.path.insert(0, str(FIXTURES))
    from relu_mlp import ReluMLP

    return ReluMLP()


def _batches(count: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The batches gradcheck draws from sample_batch(): the generator seeded with seed + i for batch i."""
    from relu_mlp import sample_batch

    out = []
    for i in range(count):
        torch.manual_seed(seed + i)
        out.append(sample_batch())
    return out


@pytest.fixture(scope="module")
def healthy_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 SGD steps at lr 0.05 on fresh batches: a model that trains well, saved with its optimizer."""
    torch.manual_seed(0)
    model = _relu_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=LOW_LR)
    for i, (x, y) in enumerate(_batches(200, seed=1000)):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        assert i < 190 or math.isfinite(model.fc1.weight.abs().max().item())
    path = tmp_path_factory.mktemp("ckpt") / "healthy.pt"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": 200}, path)
    return path


def _first_divergence(checkpoint: Path, lr: float) -> tuple[int, str] | None:
    """This file's own loop: the first step (1-based) and layer that went non-finite, or None."""
    model = _relu_mlp()
    model.load_state_dict(torch.load(checkpoint, weights_only=True)["model"])
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    layers = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    outputs: dict[str, bool] = {}
    for name in layers:
        model.get_submodule(name).register_forward_hook(
            lambda m, a, out, name=name: outputs.__setitem__(name, bool(torch.isfinite(out).all()))
        )
    batches = _batches(BATCHES)
    for step in range(STEPS):
        x, y = batches[step % BATCHES]
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        bad_out = [n for n in layers if not outputs[n]]
        bad_grad = [
            n
            for n in layers
            if not all(torch.isfinite(p.grad).all() for p in model.get_submodule(n).parameters())
        ]
        optimizer.step()
        bad_weight = [
            n for n in layers if not all(torch.isfinite(p).all() for p in model.get_submodule(n).parameters())
        ]
        if bad_out:
            return step + 1, bad_out[0]  # first in forward order
        if bad_grad:
            return step + 1, bad_grad[-1]  # backward runs last to first
        if bad_weight or not math.isfinite(loss.item()):
            return step + 1, (bad_weight or ["the loss"])[0]
    return None


def _analyze(cli, checkpoint: Path, lr: float) -> dict:
    args = ("--weights", str(checkpoint), "--steps", str(STEPS), "--lr", str(lr), "--batches", str(BATCHES))
    result = cli("analyze", MODEL, *args, "--format", "json")
    assert result.exit_code in (0, 1), result
    return json.loads(result.stdout)


def test_divergence_is_named_at_the_step_and_layer_our_own_loop_finds(cli, healthy_checkpoint: Path) -> None:
    expected = _first_divergence(healthy_checkpoint, HIGH_LR)
    assert expected is not None and expected[0] > 1  # the fixture really diverges, and not at once
    doc = _analyze(cli, healthy_checkpoint, HIGH_LR)
    finding = next(f for f in doc["findings"] if f["id"] == "training-divergence")
    evidence = finding["evidence"]
    assert (evidence["step"], evidence["layer"]) == expected
    assert finding["layers"] == [expected[1]]
    assert doc["training"]["divergence"]["step"] == expected[0]
    assert len(doc["training"]["loss"]) == expected[0] - 1  # the finite steps before it
    # Measured advice: a lower lr from the step-1 update ratio, a max_norm from the early gradient norms.
    assert evidence["suggested_lr"] < HIGH_LR / 100
    first_norm = doc["training"]["total_grad_norm"][0]
    assert 0.1 * first_norm < evidence["suggested_max_norm"] < 10 * first_norm
    assert evidence["update_ratio_before"] > evidence["update_ratio_first"] > 1e-2
    assert {s["fix"] for s in finding["suggestions"]} == {"lr", "clip", "warmup"}
    # Not the arithmetic advice of a model that makes NaN by itself:
    assert not [f for f in doc["findings"] if f["id"] == "nonfinite-gradients"]
    assert "epsilon" not in json.dumps(finding) and "grad-scaler" not in json.dumps(finding)


def test_the_healthy_twin_has_no_divergence(cli, healthy_checkpoint: Path) -> None:
    assert _first_divergence(healthy_checkpoint, LOW_LR) is None
    doc = _analyze(cli, healthy_checkpoint, LOW_LR)
    assert doc["training"]["divergence"] is None
    assert len(doc["training"]["loss"]) == STEPS
    assert not [f for f in doc["findings"] if f["id"] == "training-divergence"]
    ratios = [r for values in doc["training"]["update_ratios"].values() for r in values]
    assert all(0 < r < 1e-1 for r in ratios)


def test_steps_continue_with_the_checkpoints_optimizer_state(cli, tmp_path: Path) -> None:
    model = _relu_mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for x, y in _batches(5, seed=50):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    torch.save(
        {"state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict()}, tmp_path / "a.pt"
    )
    doc = _analyze(cli, tmp_path / "a.pt", lr=2e-3)
    training = doc["training"]
    assert training["optimizer"] == "adam" and training["lr"] == 2e-3
    assert training["optimizer_source"] == "checkpoint optimizer state (Adam)"
    assert training["optimizer_state"] == "loaded from the checkpoint"


def test_configure_optimizers_in_the_model_file_is_used(cli) -> None:
    target = str(FIXTURES / "with_optimizer.py")
    result = cli("analyze", target, "--steps", "2", "--batches", "1", "--format", "json")
    assert result.exit_code in (0, 1), result
    training = json.loads(result.stdout)["training"]
    assert training["optimizer"] == "adamw" and training["lr"] == 3e-3
    assert training["optimizer_source"] == "configure_optimizers() on the model"


def test_clip_bounds_the_update_and_records_the_norm_before_clipping(cli, healthy_checkpoint: Path) -> None:
    plain = _analyze(cli, healthy_checkpoint, 1.0)["training"]
    result = cli(
        "analyze", MODEL, "--weights", str(healthy_checkpoint), "--steps", "1", "--lr", "1", "--clip", "0.01",
        "--batches", str(BATCHES), "--format", "json",
    )  # fmt: skip
    clipped = json.loads(result.stdout)["training"]
    assert clipped["clip"] == 0.01
    assert clipped["total_grad_norm"][0] == pytest.approx(plain["total_grad_norm"][0], rel=1e-5)
    scale = 0.01 / plain["total_grad_norm"][0]  # SGD: the update shrinks by exactly the clip factor
    for name, ratios in clipped["update_ratios"].items():
        assert ratios[0] == pytest.approx(plain["update_ratios"][name][0] * scale, rel=1e-3)
