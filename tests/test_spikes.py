"""Per-step judgement in the monitor and `gradcheck report` (issue 21, part A).

A small ReLU MLP trained by this file's own loop under GradientMonitor(every=1): its learning
rate jumps 400x at step 30 (a schedule bug), its twin keeps the rate. The loss and gradient
spikes gradcheck reports are checked against the loop's own plain-PyTorch numbers; trends need
finite values, enough steps and a good fit, and say why they abstain; a dead fraction that is
always 0 is drawn at the bottom of its sparkline.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "trained"
JUMP_AT, STEPS, LR = 30, 42, 0.05
LAYERS = ("fc1", "fc2", "head")


def _run(path: Path, jump: float) -> tuple[list[float], dict[str, list[float]]]:
    """Train with the monitor; return the plain-PyTorch loss and per-layer gradient norms per step."""
    from gradcheck_cli import GradientMonitor

    sys.path.insert(0, str(FIXTURES))
    from relu_mlp import ReluMLP, sample_batch

    torch.manual_seed(0)
    model = ReluMLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    losses: list[float] = []
    norms: dict[str, list[float]] = {name: [] for name in LAYERS}
    with GradientMonitor(model, every=1, jsonl=path, callback=None) as monitor:
        for step in range(STEPS):
            if step == JUMP_AT:
                for group in optimizer.param_groups:
                    group["lr"] = LR * jump
            torch.manual_seed(1000 + step)
            x, y = sample_batch()
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            losses.append(loss.item())
            for name in LAYERS:
                grads = [p.grad.double().square().sum() for p in model.get_submodule(name).parameters()]
                norms[name].append(math.sqrt(float(torch.stack(grads).sum())))
            monitor.step(loss)
            optimizer.step()
    return losses, norms


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[Path, list[float], dict[str, list[float]]]]:
    folder = tmp_path_factory.mktemp("runs")
    out = {}
    for name, jump in (("jump", 400.0), ("steady", 1.0)):
        path = folder / f"{name}.jsonl"
        losses, norms = _run(path, jump)
        out[name] = (path, losses, norms)
    return out


def _report(cli, path: Path) -> dict:
    result = cli("report", str(path), "--format", "json")
    assert result.exit_code in (0, 1), result
    return json.loads(result.stdout)


def _megatron_spike(losses: list[float]) -> int | None:
    """Megatron-LM's check in plain Python: the first loss above 10x the largest before it (5 before)."""
    for i in range(5, len(losses)):
        before = [v for v in losses[:i] if math.isfinite(v)]
        if math.isfinite(losses[i]) and losses[i] > 10 * max(before):
            return i
    return None


def test_the_loss_spike_is_named_at_its_step_with_the_layer_that_rose_first(cli, runs) -> None:
    path, losses, norms = runs["jump"]
    expected = _megatron_spike(losses)
    assert expected is not None and expected > JUMP_AT  # the fixture really spikes, after the jump
    doc = _report(cli, path)
    finding = next(f for f in doc["trend_findings"] if f["id"] == "loss-spike")
    evidence = finding["evidence"]
    assert evidence["step"] == expected  # monitor steps count from 0, as this loop's index
    assert evidence["loss"] == pytest.approx(losses[expected], rel=1e-2)
    assert evidence["worst_before"] == pytest.approx(max(losses[:expected]), rel=1e-2)
    # The layer that rose first really rose: >= 3x its median before, at or before the loss spike.
    layer, at = evidence["first_layer"], evidence["first_layer_step"]
    assert layer in LAYERS and JUMP_AT <= at <= expected
    assert norms[layer][at] >= 3 * statistics.median(norms[layer][max(0, at - 20) : at])
    assert evidence["lead_steps"] == expected - at
    # No layer rose earlier in plain PyTorch.
    for name in LAYERS:
        for i in range(JUMP_AT - 10, at):
            assert norms[name][i] < 3 * statistics.median(norms[name][max(0, i - 20) : i]), (name, i)
    assert finding["layers"] == [layer]


def test_the_gradient_norm_spike_comes_no_later_than_the_loss(cli, runs) -> None:
    path, losses, norms = runs["jump"]
    doc = _report(cli, path)
    finding = next(f for f in doc["trend_findings"] if f["id"] == "grad-norm-spike")
    evidence = finding["evidence"]
    step = evidence["step"]
    total = [math.sqrt(sum(norms[n][i] ** 2 for n in LAYERS)) for i in range(len(losses))]
    assert evidence["grad_norm"] == pytest.approx(total[step], rel=1e-2)
    assert total[step] >= 5 * statistics.median(total[max(0, step - 20) : step])
    assert JUMP_AT <= step <= _megatron_spike(losses)  # type: ignore[operator]
    assert evidence["loss_spike_step"] == _megatron_spike(losses)
    assert evidence["lead_steps"] >= 0 and evidence["suggested_max_norm"] < total[step]


def test_a_steady_run_has_no_spike_and_no_trend(cli, runs) -> None:
    path, losses, _ = runs["steady"]
    assert _megatron_spike(losses) is None
    doc = _report(cli, path)
    ids = {f["id"] for f in doc["trend_findings"]}
    assert not ids & {"loss-spike", "grad-norm-spike", "gradient-trend"}, ids
    # 42 noisy steps: no slope is printed, and each layer says why.
    for layer in doc["layers"]:
        assert layer["orders_per_1000_steps"] is None and "noise" in layer["no_slope_because"], layer


def test_a_run_that_went_non_finite_gets_no_slope(cli, tmp_path: Path) -> None:
    """The gradient grows 10x a step until it overflows: a slope through that is meaningless."""
    lines = []
    for step in range(12):
        value = 10.0 ** (step * 4)
        finite = step < 10
        lines.append(
            {
                "step": step,
                "loss": 1.0 if finite else None,
                "loss_nonfinite": not finite,
                "layers": [
                    {
                        "name": "fc",
                        "type": "Linear",
                        "index": 0,
                        "grad_norm": value if finite else None,
                        "weight_norm": 1.0,
                        "grad_weight_ratio": value,
                        "zero_grad_fraction": 0.0,
                        "nonfinite": 0 if finite else 3,
                    }
                ],
            }
        )
    path = tmp_path / "nan.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    doc = _report(cli, path)
    layer = doc["layers"][0]
    assert (
        layer["orders_per_1000_steps"] is None and layer["no_slope_because"] == "went non-finite at step 10"
    )
    assert "gradient-trend" not in {f["id"] for f in doc["trend_findings"]}
    text = cli("report", str(path)).stdout
    assert "orders/1k" in text and "+4000" not in text and "went non-finite at step 10" in text


def test_an_always_zero_dead_fraction_is_drawn_at_the_bottom(cli, runs) -> None:
    from gradcheck_cli.render.history import BLOCKS, sparkline

    assert sparkline([0.0] * 20, log=False, bounds=(0.0, 1.0)) == BLOCKS[0] * 20
    assert sparkline([1.0] * 4, log=False, bounds=(0.0, 1.0)) == BLOCKS[7] * 4
    path, _, _ = runs["steady"]
    dead = [json.loads(line)["activations"] for line in path.read_text().splitlines()]
    act1 = [next(a for a in acts if a["name"] == "act1")["dead_fraction"] for acts in dead]
    assert set(act1) == {0.0}  # plain fact from the monitor's own lines: act1 never has a dead unit
    text = cli("report", str(path)).stdout
    row = next(line for line in text.splitlines() if line.strip().startswith("act1"))
    assert BLOCKS[0] * 10 in row and BLOCKS[3] not in row
