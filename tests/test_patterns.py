"""Verdicts on modern design patterns at init (tests/fixtures/patterns/): designs are not pathologies,
their broken twins still fail, and a missed measurement is never a zero."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradcheck_cli.config.analyze_config import build_config
from gradcheck_cli.config.specs import parse_input
from gradcheck_cli.judge.diagnose import diagnose
from gradcheck_cli.measure import probe as probe_module
from gradcheck_cli.measure import zero_gains as zero_gates
from gradcheck_cli.measure.aggregate import role_of
from gradcheck_cli.measure.probe import GradientProbe
from gradcheck_cli.measure.structure import has_residual_add
from gradcheck_cli.records.findings import LayerStatus, Severity
from gradcheck_cli.records.report import Report
from gradcheck_cli.records.stats import ModelInfo, ProbeResult, RunInfo
from gradcheck_cli.run.pipeline import analyze_target

PATTERNS = Path(__file__).parent / "fixtures" / "patterns"
FAULTS = Path(__file__).parent / "fixtures" / "faults"
torch.set_num_threads(1)


def run(target: str, shape: str | None, batches: int = 2) -> Report:
    flags: dict[str, object] = {"batches": batches}
    if shape:
        flags["inputs"] = (parse_input(shape),)
    return analyze_target(build_config(str(PATTERNS / target), flags, {}))


def ids(report: Report, severity: Severity = Severity.ERROR) -> list[str]:
    return [f.id for f in report.findings if f.severity.rank >= severity.rank]


def status(report: Report) -> dict[str, LayerStatus]:
    return {row.stats.name: row.status for row in report.layers}


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- roles ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "role"),
    [
        ("blocks.3.mlp.fc1", "blocks.#.mlp.fc1"),
        ("blocks.0.mlp.0", "blocks.#.mlp.0"),  # positions within a block stay distinct
        ("blocks.0.mlp.3", "blocks.#.mlp.3"),
        ("encoder_layer_11.linear1", "encoder_layer_#.linear1"),
        ("decoder_layer_0.linear1", "decoder_layer_#.linear1"),
        ("layer_3.attn", "layer_#.attn"),
        ("block3.fc", "block#.fc"),
        ("h.0.attn.c_attn", "h.#.attn.c_attn"),
        ("blocks.0.1.conv", "blocks.#.#.conv"),
        ("layer2.0.conv1", "layer#.#.conv1"),
        ("features.7", "features.#"),  # a plain stack: the last index is the depth
        ("fc7", "fc#"),
        ("head", "head"),
    ],
)
def test_roles_normalise_every_index_like_part(name: str, role: str) -> None:
    assert role_of(name) == role


@pytest.mark.parametrize("target", ["encoder_decoder.py", "encoder_decoder.py:four_layers"])
def test_encoder_decoder_roles_never_cross_stacks(target: str) -> None:
    report = run(target, "int:4x16:100")
    assert ids(report, Severity.WARNING) == []
    roles = {row.stats.role for row in report.layers}
    assert "encoder_layer_#.linear1" in roles and "decoder_layer_#.linear1" in roles


# -- gated at init --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("target", "shape", "layer", "gate"),
    [
        ("zero_init_resnet.py", "2x3x32x32", "layer1.0.conv1", "layer1.0.bn2.weight"),
        ("vit_zero_head.py", "2x3x32x32", "blocks.0.mlp.0", "head.weight"),
        ("rezero.py", "4x64", "blocks.0.fc1", "blocks.0.alpha"),
        ("nf_resnet.py", "2x3x32x32", "blocks.0.conv1", "blocks.0.skipinit_gain"),
        ("convnext_layerscale.py", "2x3x32x32", "stage0.0.pwconv1", "stage0.0.gamma"),
        ("se_resnet_zero.py", "2x3x32x32", "blocks.0.se.fc1", "blocks.0.bn2.weight"),
    ],
)
def test_zero_initialised_gates_are_gated_not_findings(
    target: str, shape: str, layer: str, gate: str
) -> None:
    report = run(target, shape)
    assert ids(report, Severity.WARNING) == []
    row = next(r for r in report.layers if r.stats.name == layer)
    assert row.status is LayerStatus.GATED
    assert row.stats.gated_by == gate
    assert row.stats.open_act_grad_norm > 0
    for finding in report.findings:
        assert "inf" not in finding.message


def test_relu_of_zero_behind_a_closed_gate_is_not_dead() -> None:
    report = run("se_resnet_zero.py", "2x3x32x32")
    se = [a for a in report.activations if a.name.endswith("se.relu")]
    assert se and all(a.dead_fraction == 0 and a.unobserved_fraction == 1.0 for a in se)


@pytest.mark.parametrize(("target", "shape"), [("stuck_gate.py", "4x64"), ("zero_zero_head.py", "4x32")])
def test_a_zero_gate_with_a_zero_gradient_is_an_error(target: str, shape: str) -> None:
    report = run(target, shape)
    (finding,) = [f for f in report.findings if f.severity is Severity.ERROR]
    assert finding.id == "vanishing-gradients"
    assert "its own gradient is zero too" in finding.message
    assert finding.evidence["gate_grad_norm"] and set(finding.evidence["gate_grad_norm"]) == {0.0}  # type: ignore[arg-type]
    assert all(status(report)[name] is LayerStatus.VANISHING for name in finding.layers)


@pytest.mark.parametrize("target", ["rezero.py", "zero_init_resnet.py"])
def test_flow_behind_a_gate_predicts_the_gradient_after_real_sgd_steps(target: str) -> None:
    torch.manual_seed(0)
    model = load(PATTERNS / target).build_model()
    x = torch.randn(8, 64) if target == "rezero.py" else torch.randn(4, 3, 32, 32)
    y = torch.randint(0, 10, (x.shape[0],))

    def backward() -> None:
        F.cross_entropy(model(x), y).backward()

    with GradientProbe(model) as probe:
        backward()
        probe.collect()
        layers = probe.layer_stats()
    model.zero_grad(set_to_none=True)
    layers, _ = zero_gates.measure(model, backward, layers, seed=0)
    lr, steps = 0.01, 3
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        backward()
        optimizer.step()
    optimizer.zero_grad()
    with GradientProbe(model) as probe:
        backward()
        probe.collect()
        after = {layer.name: layer.act_grad_norm for layer in probe.layer_stats()}
    gated = [layer for layer in layers if layer.gated_by]
    assert len(gated) >= 6
    for layer in gated:  # after k steps at lr η the flow is k·η times the measured rate
        assert after[layer.name] / (steps * lr * layer.open_act_grad_norm) == pytest.approx(1.0, abs=0.5)


# -- no silent misses ---------------------------------------------------------------------------
class RelPosBias(nn.Module):
    """The relative-position-bias MLP of shifted-window attention, on a 4-D coordinate table."""

    def __init__(self, inplace: bool) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2, 64), nn.ReLU(inplace=inplace), nn.Linear(64, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


def _probe_relpos(inplace: bool) -> ProbeResult:
    torch.manual_seed(0)
    model = RelPosBias(inplace)
    coords = torch.randn(1, 7, 7, 2)
    with GradientProbe(model) as probe:
        model(coords).square().sum().backward()
        probe.collect()
        layers = probe.layer_stats()
    info = ModelInfo(class_name="RelPosBias", parameters=0, trainable=0, device="cpu", dtype="float32")
    return ProbeResult(model=info, run=RunInfo(batches=1, steps=0, seed=0, loss="sum"), layers=layers)


def test_linear_on_4d_before_an_inplace_relu_is_measured_at_the_views_base() -> None:
    inplace = {layer.name: layer for layer in _probe_relpos(True).layers}
    plain = {layer.name: layer for layer in _probe_relpos(False).layers}
    first = inplace["mlp.0"]
    assert first.measured and first.act_grad_norm > 0
    assert first.act_grad_norm == pytest.approx(plain["mlp.0"].act_grad_norm, rel=1e-5)


def test_a_hook_that_never_fires_is_not_measured_never_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        probe_module, "hook_target", lambda out, args: out
    )  # the old behaviour: hook the view
    result = _probe_relpos(True)
    first = next(layer for layer in result.layers if layer.name == "mlp.0")
    assert first.grad_norm > 0
    assert not first.measured and math.isnan(first.act_grad_norm)
    assert diagnose(result).layer_status["mlp.0"] is LayerStatus.NOT_MEASURED


def test_lstm_stepped_frame_by_frame_with_discarded_outputs_does_not_crash() -> None:
    report = run("cnn_lstm.py", "2x8x3x16x16")
    assert ids(report, Severity.WARNING) == []
    lstm = next(row.stats for row in report.layers if row.stats.name == "lstm")
    assert lstm.measured and lstm.act_grad_norm > 0


def test_a_tensor_hook_called_with_none_is_skipped() -> None:
    model = nn.Linear(4, 4)
    with GradientProbe(model) as probe:
        hook = probe._grad_hook(probe.layers[0])
        hook(None)  # autograd passes None for an output that did not reach the loss
        model(torch.randn(2, 4)).sum().backward()
        probe.collect()
        (layer,) = probe.layer_stats()
    assert layer.act_grad_norm == pytest.approx(math.sqrt(8))  # d(sum)/d(out) is 2x4 ones


# -- batch size --------------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [2, 16, 64])
def test_squeeze_excite_units_are_not_dead_at_any_batch(batch: int) -> None:
    report = run("se_mobilenet.py", f"{batch}x3x32x32", batches=1)
    assert "dead-units" not in ids(report, Severity.INFO)
    assert min(a.observations for a in report.activations if a.family == "relu") >= 64


@pytest.mark.parametrize("batch", [2, 16, 64])
def test_a_dead_layer_is_dead_at_every_batch(batch: int) -> None:
    flags = {"batches": 1, "inputs": (parse_input(f"{batch}x16"),)}
    config = build_config(str(FAULTS / "dead_module.py"), flags, {})
    report = analyze_target(config)
    assert "dead-units" in ids(report, Severity.WARNING)


@pytest.mark.parametrize("batch", [2, 16, 64])
def test_batchnorm_convs_and_a_tiny_head_draw_no_exploding_verdict_at_any_batch(batch: int) -> None:
    report = run("tiny_head.py", f"{batch}x3x16x16", batches=1)
    assert ids(report, Severity.WARNING) == []
    resnet = analyze_target(
        build_config(
            str(PATTERNS.parent / "controls" / "resnet_cifar.py"),
            {"batches": 1, "inputs": (parse_input(f"{batch}x3x32x32"),)},
            {},
        )
    )
    assert "exploding-gradients" not in ids(resnet, Severity.WARNING)


# -- advice and severity --------------------------------------------------------------------------
def test_residual_branches_are_seen_in_the_graph() -> None:
    x = torch.randn(2, 64)
    assert has_residual_add(load(PATTERNS / "rezero.py").build_model()(x).sum())
    assert not has_residual_add(load(PATTERNS / "plain_deep_stack.py").build_model()(x).sum())


def test_layernorm_advice_uses_the_feature_dimension() -> None:
    report = run("plain_deep_stack.py", "4x16x64")  # 16 tokens of 64 features: numel 1024
    (finding,) = [f for f in report.findings if f.id == "vanishing-gradients"]
    texts = " ".join(s.text for s in finding.suggestions)
    assert "nn.LayerNorm(64)" in texts and "1024" not in texts


@pytest.mark.parametrize(
    ("target", "shape"), [("sigmoid_regressor.py", None), ("tanh_saturated_stack.py", "16x32")]
)
def test_saturation_that_stops_learning_is_an_error(target: str, shape: str | None) -> None:
    report = run(target, shape)
    (finding,) = [f for f in report.findings if f.id == "saturated-activations"]
    assert finding.severity is Severity.ERROR
    assert float(finding.evidence["attenuation"]) <= 0.1  # type: ignore[arg-type]


def test_plain_deep_stack_still_vanishes() -> None:
    assert ids(run("plain_deep_stack.py", "8x64")) == ["vanishing-gradients"]


def test_json_names_the_gate_and_the_flow_once_it_opens() -> None:
    from gradcheck_cli.render.json import to_document

    document = to_document(run("rezero.py", "4x64"))
    row = next(layer for layer in document["layers"] if layer["name"] == "blocks.0.fc1")
    assert row["status"] == "gated"
    assert row["gated_by"] == "blocks.0.alpha"
    assert row["act_grad_norm"] == 0.0 and row["open_act_grad_norm"] > 0
