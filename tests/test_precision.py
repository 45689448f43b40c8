"""Mixed precision on CPU: bfloat16 autocast end to end, float16 underflow measured and diagnosed."""

from __future__ import annotations

import json
import math
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradcheck_cli.judge.rules import get_rule
from gradcheck_cli.judge.rules.base import DOC_SECTIONS
from gradcheck_cli.judge.rules.fp16_underflow import Fp16UnderflowLimits, fp16_underflow
from gradcheck_cli.measure import device as device_module
from gradcheck_cli.measure.underflow import GRAD_SCALER_INIT, measure_fp16_underflow
from gradcheck_cli.records.findings import Severity
from gradcheck_cli.records.stats import Fp16Underflow, LayerUnderflow, ModelInfo, ProbeResult, RunInfo

# The forward refuses to run outside autocast, so a passing run proves the precision was applied.
MODEL = """
import torch
import torch.nn.functional as F
from torch import nn

EXPECT = {expect}


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 32)
        self.head = nn.Linear(32, 4)

    def forward(self, x):
        hidden = torch.relu(self.fc1(x))
        if EXPECT is not None and hidden.dtype != EXPECT:
            raise RuntimeError(f"expected {{EXPECT}} activations under autocast, got {{hidden.dtype}}")
        return self.head(torch.relu(self.fc2(hidden)))


def sample_batch():
    return torch.randn(8, 16), torch.randn(8, 4)


def loss_fn(output, target):
    return F.mse_loss(output.float(), target) * {loss_scale}
"""


def write_model(tmp_path: Path, name: str, expect: str = "None", loss_scale: float = 1.0) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(MODEL.format(expect=expect, loss_scale=loss_scale)))
    return path


def analyze(cli: Any, path: Path, *flags: str, device: str = "cpu") -> tuple[int, dict[str, Any]]:
    # --device cpu by default: these are CPU tests, also when scripts/gpu-check.sh runs them on a GPU.
    result = cli("analyze", str(path), "--device", device, "--format", "json", "--batches", "2", *flags)
    assert result.exit_code in (0, 1), result
    return result.exit_code, json.loads(result.stdout)


def grad_norms(report: dict[str, Any]) -> list[float]:
    return [row["grad_norm"] for row in report["layers"]]


def finding(report: dict[str, Any], finding_id: str) -> dict[str, Any] | None:
    return next((f for f in report["findings"] if f["id"] == finding_id), None)


# -- bfloat16 ---------------------------------------------------------------------------------------
def test_bfloat16_autocast_on_cpu_end_to_end(cli, tmp_path: Path) -> None:
    bf16 = write_model(tmp_path, "bf16_net", expect="torch.bfloat16")
    code, report = analyze(cli, bf16, "--dtype", "bfloat16")
    assert code == 0
    assert report["model"]["dtype"] == "bfloat16" and report["model"]["device"] == "cpu"
    assert all(math.isfinite(v) and v > 0 for v in grad_norms(report))
    # Statistics are computed in float32 from bfloat16 gradients: within bfloat16's precision
    # (8 bits of mantissa, compounded over a few layers) of the float32 run.
    _, reference = analyze(cli, write_model(tmp_path, "f32_net"), "--dtype", "float32")
    for low, full in zip(grad_norms(report), grad_norms(reference), strict=True):
        assert low == pytest.approx(full, rel=0.05)


def test_float32_run_really_is_float32(cli, tmp_path: Path) -> None:
    path = write_model(tmp_path, "strict", expect="torch.bfloat16")
    result = cli("analyze", str(path), "--device", "cpu", "--format", "json")
    assert result.exit_code == 2, result
    assert "expected torch.bfloat16 activations" in result.stderr


# -- float16 underflow ------------------------------------------------------------------------------
def test_fp16_underflow_fires_on_a_model_built_to_underflow(cli, tmp_path: Path) -> None:
    # loss * 1e-6 puts the gradients near 1e-9, below float16's smallest subnormal (6e-8).
    # (No dtype assertion in forward: the measurement's float32 reference run has no autocast.)
    path = write_model(tmp_path, "tiny_loss", loss_scale=1e-6)
    code, report = analyze(cli, path, "--dtype", "float16")
    found = finding(report, "fp16-underflow")
    assert found is not None, report["findings"]
    assert code == 1 and found["severity"] == "error"
    evidence = found["evidence"]
    assert evidence["fraction_without_scaler"] > 0.9
    assert evidence["fraction_with_scaler"] < 0.05
    assert evidence["loss_scale"] == GRAD_SCALER_INIT
    assert evidence["threshold"] == Fp16UnderflowLimits().min_fraction
    assert set(found["layers"]) == {"fc1", "fc2", "head"}
    assert [s["fix"] for s in found["suggestions"]] == ["grad-scaler"]


def test_fp16_statistics_are_unscaled_and_match_float32(cli, tmp_path: Path) -> None:
    # The probe's backward runs loss-scaled by 65536; the reported norms must not be.
    path = write_model(tmp_path, "tiny_loss", loss_scale=1e-6)
    _, half = analyze(cli, path, "--dtype", "float16")
    _, full = analyze(cli, path, "--dtype", "float32")
    assert finding(full, "fp16-underflow") is None  # measured only under float16
    for low, ref in zip(grad_norms(half), grad_norms(full), strict=True):
        assert low == pytest.approx(ref, rel=0.02)


def test_fp16_healthy_twin_does_not_fire(cli, tmp_path: Path) -> None:
    code, report = analyze(cli, write_model(tmp_path, "plain_loss"), "--dtype", "float16", "--steps", "2")
    assert finding(report, "fp16-underflow") is None
    assert code == 0


def test_loss_scale_backs_off_when_scaled_gradients_overflow() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    x, y = torch.randn(4, 8), torch.randn(4, 2)

    def run_loss(dtype: str) -> torch.Tensor:
        with device_module.autocast("cpu", dtype):
            out = model(x)
        return F.mse_loss(out.float(), y) * 1e4  # gradients near 1e4: times 65536 overflows float16

    measured = measure_fp16_underflow(model, run_loss, seed=0)
    assert measured.loss_scale < GRAD_SCALER_INIT
    assert math.log2(measured.loss_scale).is_integer()  # halved, as GradScaler backs off
    assert measured.fraction_without_scaler == 0.0 and measured.fraction_with_scaler == 0.0
    assert all(p.grad is None for p in model.parameters())  # the measurement leaves no gradient behind


def test_forward_overflow_in_float16_settles_on_no_scaling() -> None:
    model = nn.Linear(4, 4)

    def run_loss(dtype: str) -> torch.Tensor:
        with device_module.autocast("cpu", dtype):
            out = model(torch.full((2, 4), 1e5))  # 1e5 is past float16's largest value, 65504
        return out.float().square().mean()

    measured = measure_fp16_underflow(model, run_loss, seed=0)
    assert measured.loss_scale == 1.0


def test_forward_failing_under_autocast_hints_at_the_precision(cli, tmp_path: Path) -> None:
    path = write_model(tmp_path, "wants_fp16", expect="torch.float16")
    result = cli("analyze", str(path), "--device", "cpu", "--dtype", "bfloat16")
    assert result.exit_code == 2, result
    assert "(under bfloat16 autocast on cpu)" in result.stderr
    assert "no bfloat16 kernel on cpu: try --dtype float32" in result.stderr


def test_float16_without_cpu_autocast_support_is_exit_2(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_module, "_cpu_fp16_autocast", lambda: False)
    result = cli("analyze", "builtin:residual-mlp", "--device", "cpu", "--dtype", "float16")
    assert result.exit_code == 2, result
    assert "use bfloat16 on CPU" in result.stderr


# -- the rule on hand-built measurements ------------------------------------------------------------
def probe_with(without: float, with_scaler: float) -> ProbeResult:
    layers = (
        LayerUnderflow(name="fc1", elements=100, fraction_without_scaler=without, fraction_with_scaler=0.0),
        LayerUnderflow(name="head", elements=100, fraction_without_scaler=0.0, fraction_with_scaler=0.0),
    )
    return ProbeResult(
        model=ModelInfo(class_name="Net", parameters=200, trainable=200, device="cpu", dtype="float16"),
        run=RunInfo(batches=1, steps=0, seed=0, loss="mse"),
        layers=(),
        fp16_underflow=Fp16Underflow(
            loss_scale=65536.0,
            elements=200,
            fraction_without_scaler=without / 2,
            fraction_with_scaler=with_scaler,
            layers=layers,
        ),
    )


@pytest.mark.parametrize(
    ("without", "severity"), [(0.02, None), (0.4, Severity.WARNING), (1.0, Severity.ERROR)]
)
def test_rule_severity_follows_the_flushed_fraction(without: float, severity: Severity | None) -> None:
    found = list(fp16_underflow(probe_with(without, 0.0), Fp16UnderflowLimits()))
    assert [f.severity for f in found] == ([severity] if severity else [])
    if found:
        assert found[0].layers == ("fc1",)
        assert found[0].evidence["worst_layer"] == "fc1"
        assert "GradScaler" in found[0].suggestions[0].text


def test_rule_says_when_even_a_scaler_is_not_enough() -> None:
    (found,) = fp16_underflow(probe_with(1.0, 0.3), Fp16UnderflowLimits())
    assert "bfloat16" in found.suggestions[0].text


def test_rule_is_silent_without_a_float16_measurement() -> None:
    probe = probe_with(1.0, 0.0)
    no_measurement = ProbeResult(model=probe.model, run=probe.run, layers=())
    assert list(fp16_underflow(no_measurement, Fp16UnderflowLimits())) == []


def test_rule_is_registered_with_full_documentation() -> None:
    spec = get_rule("fp16-underflow")
    assert spec is not None and spec.fixes == ("grad-scaler",)
    for section in DOC_SECTIONS:
        assert f"## {section}" in spec.doc


# -- on a GPU -------------------------------------------------------------------------------------
HAS_CUDA = torch.cuda.is_available()
cuda = pytest.mark.skipif(
    not HAS_CUDA and os.environ.get("GRADCHECK_REQUIRE_CUDA") != "1", reason="needs a CUDA GPU"
)


@cuda
def test_gpu_fp16_underflow_fires_and_its_healthy_twin_does_not(cli, tmp_path: Path) -> None:
    assert HAS_CUDA, "GRADCHECK_REQUIRE_CUDA=1 but no CUDA device"
    tiny = write_model(tmp_path, "tiny_loss", loss_scale=1e-6)
    _, report = analyze(cli, tiny, "--dtype", "float16", device="cuda")
    found = finding(report, "fp16-underflow")
    assert found is not None and found["evidence"]["fraction_without_scaler"] > 0.9
    assert found["evidence"]["fraction_with_scaler"] < 0.05
    _, full = analyze(cli, tiny, "--dtype", "float32", device="cuda")
    for low, ref in zip(grad_norms(report), grad_norms(full), strict=True):
        assert low == pytest.approx(ref, rel=0.02)
    _, healthy = analyze(cli, write_model(tmp_path, "plain_loss"), "--dtype", "float16", device="cuda")
    assert finding(healthy, "fp16-underflow") is None


@cuda
def test_gpu_bfloat16_autocast_reaches_the_model(cli, tmp_path: Path) -> None:
    code, report = analyze(
        cli, write_model(tmp_path, "bf16_net", expect="torch.bfloat16"), "--dtype", "bfloat16", device="cuda"
    )
    assert code == 0 and report["model"]["device"] == "cuda"
