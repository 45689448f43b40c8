"""--versus ranks changes relative to the reference state; advice for a trained model fits one (issue 21, A).

Two states of one three-ReLU MLP, made by setting biases so that, on gradcheck's own batches
(checked here in plain PyTorch), act2 goes from ~55% to ~60% dead and act3 from ~2% to ~80%:
the finding must lead with act3, the larger change, not with act2, the first in forward order.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

MODEL = """
import torch
from torch import nn


class ThreeRelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 64)
        self.act1 = nn.ReLU()
        self.fc2 = nn.Linear(64, 64)
        self.act2 = nn.ReLU()
        self.fc3 = nn.Linear(64, 64)
        self.act3 = nn.ReLU()
        self.head = nn.Linear(64, 4)

    def forward(self, x):
        return self.head(self.act3(self.fc3(self.act2(self.fc2(self.act1(self.fc1(x)))))))


def sample_batch(batch_size=64):
    x = torch.randn(batch_size, 16)
    return x, (x[:, :4]).argmax(dim=1)
"""


def _load(folder: Path) -> tuple[torch.nn.Module, object]:
    namespace: dict = {}
    exec(compile(MODEL, str(folder / "three_relu.py"), "exec"), namespace)
    return namespace["ThreeRelu"], namespace["sample_batch"]


def _kill(state: dict, layer: str, units: int) -> dict:
    out = {k: v.clone() for k, v in state.items()}
    out[f"{layer}.bias"][:units] = -1e3  # never positive on any input
    return out


def _dead_fractions(cls, sample, state: dict, batches: int = 3) -> dict[str, float]:
    """Plain PyTorch: the fraction of units never positive on gradcheck's batches (seed i for batch i)."""
    model = cls()
    model.load_state_dict(state)
    seen: dict[str, torch.Tensor] = {}
    for name in ("act1", "act2", "act3"):
        model.get_submodule(name).register_forward_hook(
            lambda m, a, out, name=name: seen.__setitem__(
                name, seen.get(name, torch.zeros(out.shape[1], dtype=torch.bool)) | (out > 0).any(0)
            )
        )
    with torch.no_grad():
        for i in range(batches):
            torch.manual_seed(i)
            model(sample()[0])
    return {name: 1 - float(alive.float().mean()) for name, alive in seen.items()}


@pytest.fixture(scope="module")
def states(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, dict, dict]:
    folder = tmp_path_factory.mktemp("versus_rank")
    (folder / "three_relu.py").write_text(MODEL)
    cls, sample = _load(folder)
    torch.manual_seed(0)
    base = cls().state_dict()
    reference = _kill(_kill(base, "fc2", 35), "fc3", 1)
    trained = _kill(_kill(base, "fc2", 38), "fc3", 51)
    torch.save(reference, folder / "reference.pt")
    torch.save({"model": trained, "step": 5000}, folder / "trained.pt")
    return (
        folder / "three_relu.py",
        folder / "reference.pt",
        folder / "trained.pt",
        _dead_fractions(cls, sample, reference),
        _dead_fractions(cls, sample, trained),
    )


def test_the_largest_change_since_the_reference_leads(cli, states) -> None:
    model, reference, trained, before, after = states
    change = {name: after[name] - before[name] for name in after}
    assert after["act2"] > 0.5 and change["act2"] < 0.1  # dead already, barely changed
    assert before["act3"] < 0.15 and after["act3"] > 0.75  # mostly alive at the reference, died since
    result = cli(
        "analyze", str(model), "--weights", str(trained), "--versus", str(reference), "--format", "json"
    )
    assert result.exit_code == 0, result  # warnings only (--fail-on error)
    doc = json.loads(result.stdout)
    dead = next(f for f in doc["findings"] if f["id"] == "dead-units")
    assert dead["evidence"]["activations"][0] == "act3", dead
    assert "most newly dead at act3" in dead["message"]
    assert dead["evidence"]["dead_at_reference"][0] == pytest.approx(before["act3"], abs=0.02)
    died = next(f for f in doc["findings"] if f["id"] == "units-died-in-training")
    assert died["evidence"]["activations"] == ["act3"] and "at act3" in died["message"]
    # A trained model: the recipe first; the activation swap last and marked as needing retraining.
    fixes = [s["fix"] for s in dead["suggestions"]]
    assert fixes[:3] == ["lr", "warmup", "clip"] and fixes[-1] == "leaky-relu"
    assert "retraining" in dead["suggestions"][-1]["text"]
    assert not any(s["fix"] in ("init", "batchnorm") for s in dead["suggestions"])


def test_at_init_the_advice_is_the_build_advice() -> None:
    from gradcheck_cli.judge.rules.dead_units import DeadLimits, dead_units
    from gradcheck_cli.records.trained import CheckpointInfo
    from tests.rules.rule_factories import activation, probe

    acts = (activation("act1", dead=0.95, after="fc1", observations=192),)
    at_init = next(iter(dead_units(probe(activations=acts), DeadLimits())))
    assert [s.fix for s in at_init.suggestions][:2] == ["leaky-relu", "init"]
    trained = probe(activations=acts, checkpoint=CheckpointInfo(path="ck.pt", format="torch"))
    finding = next(iter(dead_units(trained, DeadLimits())))
    assert [s.fix for s in finding.suggestions][0] == "lr"


def test_the_recurrent_message_and_trained_advice() -> None:
    """A horizon of 0 is said as such, and a trained LSTM's gate-bias advice says it needs retraining."""
    from gradcheck_cli.judge.rules.vanishing_through_time import ThroughTimeLimits, vanishing_through_time
    from gradcheck_cli.records.trained import CheckpointInfo
    from tests.rules.rule_factories import probe, through

    curve = [1e-6 * 0.5**k for k in range(19, -1, -1)] + [1.0]
    tt = through(curve, type="LSTM", horizon=0, gate_bias=0.0, num_layers=1)
    at_init = next(iter(vanishing_through_time(probe(through_time=(tt,)), ThroughTimeLimits())))
    assert "after 0 of" not in at_init.message and "already one step back" in at_init.message
    assert "retraining" not in at_init.suggestions[0].text
    trained = probe(through_time=(tt,), checkpoint=CheckpointInfo(path="ck.pt", format="torch"))
    finding = next(iter(vanishing_through_time(trained, ThroughTimeLimits())))
    assert "forget-gate bias" in finding.suggestions[0].text and "retraining" in finding.suggestions[0].text
