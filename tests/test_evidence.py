"""Evidence or nothing, and numbers that cannot overflow into silence (issue 21, part A).

Each verdict is checked against this file's own plain-PyTorch computation on the same batches:
a zero or sub-resolution gradient is never `ok`, a run that measured nothing is exit 2, a
checkpoint that fills nothing is refused even with --weights-partial, per-step update ratios are
float64 (a float32 norm of a layer that changed 1e8x overflows), and the update-ratio rule sees
the first and the worst step, not only the median.
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
BATCHES = 3
LAYERS = ("fc1", "fc2", "head")


def _relu_mlp() -> nn.Module:
    sys.path.insert(0, str(FIXTURES))
    from relu_mlp import ReluMLP

    return ReluMLP()


def _batches(count: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The batches gradcheck draws from sample_batch(): the generator seeded with seed + i for batch i."""
    sys.path.insert(0, str(FIXTURES))
    from relu_mlp import sample_batch

    out = []
    for i in range(count):
        torch.manual_seed(seed + i)
        out.append(sample_batch())
    return out


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int, seed: int) -> None:
    for x, y in _batches(steps, seed=seed):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 SGD steps at lr 0.05: the MLP trains well."""
    torch.manual_seed(0)
    model = _relu_mlp()
    _train(model, torch.optim.SGD(model.parameters(), lr=0.05), 200, seed=1000)
    path = tmp_path_factory.mktemp("ckpt") / "healthy.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def wrecked(healthy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The healthy model after 30 Adam steps at lr 5: the ReLUs behind fc2 die."""
    model = _relu_mlp()
    model.load_state_dict(torch.load(healthy, weights_only=True)["model"])
    _train(model, torch.optim.Adam(model.parameters(), lr=5.0), 30, seed=5000)
    path = tmp_path_factory.mktemp("ckpt") / "wrecked.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


def _json(cli, *args: str, code: tuple[int, ...] = (0, 1)) -> dict:
    result = cli("analyze", *args, "--format", "json")
    assert result.exit_code in code, result
    return json.loads(result.stdout)


def _plain_grad_norms(checkpoint: Path) -> dict[str, float]:
    """Each layer's parameter-gradient L2 norm, median over gradcheck's batches, in plain PyTorch."""
    model = _relu_mlp()
    model.load_state_dict(torch.load(checkpoint, weights_only=True)["model"])
    per_batch: dict[str, list[float]] = {name: [] for name in LAYERS}
    for x, y in _batches(BATCHES):
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
        for name in LAYERS:
            grads = [p.grad.double().square().sum() for p in model.get_submodule(name).parameters()]
            per_batch[name].append(float(torch.stack(grads).sum().sqrt()))
    return {name: sorted(values)[len(values) // 2] for name, values in per_batch.items()}


def test_a_zero_gradient_is_never_ok(cli, wrecked: Path) -> None:
    plain = _plain_grad_norms(wrecked)
    zero = [name for name, norm in plain.items() if norm == 0]
    assert "fc1" in zero  # the fixture really is the wreck: nothing reaches fc1
    doc = _json(cli, MODEL, "--weights", str(wrecked), "--batches", str(BATCHES))
    rows = {row["name"]: row for row in doc["layers"]}
    for name in LAYERS:  # gradcheck's numbers are the plain computation's
        assert rows[name]["grad_norm"] == pytest.approx(plain[name], rel=1e-4, abs=1e-30)
    for name in zero:
        assert rows[name]["status"] != "ok", rows[name]
    finding = next(f for f in doc["findings"] if f["id"] == "zero-gradient")
    assert finding["severity"] == "error"
    assert "fc1" in finding["evidence"]["zero"] and finding["evidence"]["dead_downstream"] == ["act2"]
    assert rows["fc1"]["status"] == "vanishing"
    # A trained wreck is told to restart at a lower rate, not to change the architecture.
    assert [s["fix"] for s in finding["suggestions"]] == ["lr"]
    assert "earlier checkpoint" in finding["suggestions"][0]["text"]
    assert doc["summary"]["status"] == "error"


class _TinyBranch(nn.Module):
    """A big-weight side branch scaled by 1e-12 into the output: its gradient/weight ratio is ~1e-20."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 16)
        self.side = nn.Linear(8, 16)
        self.head = nn.Linear(16, 2)
        with torch.no_grad():
            self.side.weight.mul_(1e6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.fc(x) + 1e-12 * self.side(x)))


def test_a_sub_resolution_gradient_is_never_ok(tmp_path: Path) -> None:
    from gradcheck_cli import analyze

    torch.manual_seed(0)
    model = _TinyBranch()
    x, y = torch.randn(32, 8), torch.randint(0, 2, (32,))
    F.cross_entropy(model(x), y).backward()
    side = model.side
    ratio = math.sqrt(sum(float(p.grad.double().square().sum()) for p in side.parameters())) / math.sqrt(
        sum(float(p.detach().double().square().sum()) for p in side.parameters())
    )
    assert 0 < ratio < 1e-12  # below what float32 can add to these weights at any usual lr
    model.zero_grad()
    report = analyze(model, inputs=[(x, y)], loss=lambda out, batch: F.cross_entropy(out, batch[1]))
    rows = {row.stats.name: row for row in report.layers}
    assert rows["side"].stats.grad_weight_ratio == pytest.approx(ratio, rel=1e-3)
    assert rows["side"].status.value != "ok"
    finding = next(f for f in report.findings if f.id == "zero-gradient")
    assert finding.evidence["below_resolution"] == ["side"] and finding.severity.value == "warning"
    assert rows["fc"].status.value == "ok" and rows["head"].status.value == "ok"


FUNCTIONAL = """
import torch
from torch import nn
import torch.nn.functional as F


class Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 2)

    def forward(self, x):
        hidden = torch.relu(F.linear(x, self.fc1.weight, self.fc1.bias))
        return F.linear(hidden, self.fc2.weight, self.fc2.bias)


def sample_batch(batch_size=16):
    return torch.randn(batch_size, 8), torch.randint(0, 2, (batch_size,))
"""


def test_a_run_that_measured_nothing_is_exit_2(cli, tmp_path: Path) -> None:
    path = tmp_path / "functional.py"
    path.write_text(FUNCTIONAL)
    # Plain PyTorch: the modules' hooks never fire, yet the parameters get a gradient.
    namespace: dict = {}
    exec(compile(FUNCTIONAL, str(path), "exec"), namespace)
    model = namespace["Functional"]()
    fired: list[str] = []
    for name in ("fc1", "fc2"):
        model.get_submodule(name).register_forward_hook(lambda *a, name=name: fired.append(name))
    x, y = namespace["sample_batch"]()
    F.cross_entropy(model(x), y).backward()
    assert fired == [] and all(p.grad is not None for p in model.parameters())
    result = cli("analyze", str(path), "--format", "json")
    assert result.exit_code == 2, result
    assert not result.stdout
    assert "error: nothing was measured" in result.stderr and "fc1, fc2" in result.stderr
    assert "hint: " in result.stderr and "Traceback" not in result.stderr


def test_weights_partial_refuses_a_checkpoint_that_fills_nothing(cli, tmp_path: Path) -> None:
    other = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5))  # keys 0.weight ...: none fit
    path = tmp_path / "other.pt"
    torch.save(other.state_dict(), path)
    own = _relu_mlp().state_dict()
    assert not set(other.state_dict()) & set(own)
    for extra in ((), ("--weights-partial",)):
        result = cli("analyze", MODEL, "--weights", str(path), *extra, "--batches", "1", "--format", "json")
        assert result.exit_code == 2, (extra, result)
        assert "fills 0% of the model" in result.stderr
        hint = result.stderr.split("hint:", 1)[1]
        assert "--weights-partial" not in hint
        assert not result.stdout


def test_weights_partial_refuses_a_checkpoint_that_fills_almost_nothing(cli, tmp_path: Path) -> None:
    own = _relu_mlp().state_dict()
    path = tmp_path / "bias_only.pt"
    torch.save({"head.bias": own["head.bias"]}, path)  # 5 of 5,829 values
    filled = own["head.bias"].numel() / sum(t.numel() for t in own.values())
    assert filled < 0.01
    result = cli("analyze", MODEL, "--weights", str(path), "--weights-partial", "--batches", "1")
    assert result.exit_code == 2, result
    assert "fills 0% of the model" in result.stderr


def _plain_update_ratios(checkpoint: Path, optimizer: str, lr: float, steps: int) -> dict[str, list[float]]:
    """||W_after - W_before|| / ||W_before|| per layer and step in float64, on gradcheck's cycled batches."""
    model = _relu_mlp()
    model.load_state_dict(torch.load(checkpoint, weights_only=True)["model"])
    opt = (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)(model.parameters(), lr=lr)
    batches = _batches(BATCHES)
    out: dict[str, list[float]] = {name: [] for name in LAYERS}
    finite: list[bool] = []
    for name in LAYERS:
        model.get_submodule(name).register_forward_hook(
            lambda m, a, o: finite.append(bool(torch.isfinite(o).all()))
        )
    for step in range(steps):
        x, y = batches[step % BATCHES]
        opt.zero_grad()
        finite.clear()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        before = {n: p.detach().double().clone() for n, p in model.named_parameters()}
        finite += [bool(torch.isfinite(p.grad).all()) for p in model.parameters()]
        opt.step()
        finite += [math.isfinite(loss.item())] + [bool(torch.isfinite(p).all()) for p in model.parameters()]
        if not all(finite):  # gradcheck's divergence: an output, a gradient, the loss or a weight
            break
        for name in LAYERS:
            keys = [f"{name}.weight", f"{name}.bias"]
            params = dict(model.named_parameters())
            delta = sum(float((params[k].detach().double() - before[k]).square().sum()) for k in keys)
            weight = sum(float(before[k].square().sum()) for k in keys)
            out[name].append(math.sqrt(delta) / math.sqrt(weight))
    return out


def test_update_ratios_are_float64_so_the_largest_change_is_named(cli, healthy: Path) -> None:
    plain = _plain_update_ratios(healthy, "sgd", 50.0, 30)
    largest = max(
        ((name, i) for name in LAYERS for i in range(len(plain[name]))), key=lambda k: plain[k[0]][k[1]]
    )
    assert plain[largest[0]][largest[1]] > 1e6  # its change's float32 norm overflows: (1e20)^2 > 3.4e38
    doc = _json(cli, MODEL, "--weights", str(healthy), "--steps", "30", "--lr", "50", "--optimizer", "sgd")
    recorded = doc["training"]["update_ratios"]
    for name in LAYERS:
        assert len(recorded[name]) == len(plain[name])
        for got, want in zip(recorded[name], plain[name], strict=True):
            assert got is not None and got == pytest.approx(want, rel=1e-3, abs=1e-12), name
    finding = next(f for f in doc["findings"] if f["id"] == "training-divergence")
    evidence = finding["evidence"]
    assert (evidence["update_ratio_max_layer"], evidence["update_ratio_max_step"]) == (
        largest[0],
        largest[1] + 1,
    )
    assert evidence["update_ratio_max"] == pytest.approx(plain[largest[0]][largest[1]], rel=1e-2)
    assert largest[0] in finding["message"]


def test_update_ratio_judges_the_first_and_worst_steps(cli, healthy: Path) -> None:
    plain = _plain_update_ratios(healthy, "adam", 5.0, 30)
    first = {name: values[0] for name, values in plain.items()}
    medians = {name: sorted(values)[len(values) // 2] for name, values in plain.items()}
    assert max(first.values()) > 1 and max(medians.values()) < 0.1  # the median alone would say nothing
    doc = _json(cli, MODEL, "--weights", str(healthy), "--steps", "30", "--lr", "5", "--optimizer", "adam")
    finding = next(f for f in doc["findings"] if f["id"] == "update-ratio")
    evidence = finding["evidence"]
    assert set(evidence["too_large"]) == {name for name in LAYERS if first[name] > 1}
    for name, got in zip(evidence["too_large"], evidence["first_ratio"], strict=True):
        assert got == pytest.approx(first[name], rel=1e-2)
    worst = max(evidence["too_large"], key=lambda n: max(plain[n]))
    assert f"{worst} moved" in finding["message"] and "at step 1" in finding["message"]
    # The suggested rate brings the first step under 0.1 and the median near 1e-3.
    assert evidence["suggested_lr"] <= 5.0 * 0.1 / max(first.values()) * 1.01


def test_update_ratio_is_quiet_on_a_healthy_rate(cli, healthy: Path) -> None:
    plain = _plain_update_ratios(healthy, "sgd", 0.05, 10)
    assert max(max(values) for values in plain.values()) < 0.1
    doc = _json(cli, MODEL, "--weights", str(healthy), "--steps", "10", "--lr", "0.05", "--optimizer", "sgd")
    assert not [f for f in doc["findings"] if f["id"] in ("update-ratio", "zero-gradient")]
