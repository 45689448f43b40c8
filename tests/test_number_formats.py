"""--precision: per-layer number-format headroom, checked against plain-PyTorch computations."""

from __future__ import annotations

import importlib.util
import json
import math
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from gradcheck_cli.judge.format_verdict import GradientRange, loss_scale
from gradcheck_cli.judge.rules import get_rule
from gradcheck_cli.judge.rules.base import DOC_SECTIONS
from gradcheck_cli.measure.format_counts import Counts, to_host
from gradcheck_cli.records.precision import KEEP_HIGHER, NUMBER_FORMATS, number_format

# tiny: outputs around 2^-20 (below float16's smallest normal 2^-14, far above bfloat16's 2^-126);
# huge: outputs around 1e5 (above float16's largest value 65504). The functional rescalings between
# them keep the rest of the network at unit scale. Weights and batch are fixed by generators.
MODEL = """
import torch
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.fc1 = nn.Linear(16, 32)
        self.tiny = nn.Linear(32, 32, bias=False)
        self.back = nn.Linear(32, 32)
        self.huge = nn.Linear(32, 32, bias=False)
        self.head = nn.Linear(32, 4)
        with torch.no_grad():
            for layer in (self.fc1, self.back, self.head):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) / layer.in_features**0.5)
                layer.bias.zero_()
            self.tiny.weight.copy_(torch.randn(32, 32, generator=g) * 2.0**-20 / 32**0.5 * 2)
            self.huge.weight.copy_(torch.randn(32, 32, generator=g) * 1e5 / 32**0.5 * 2)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        s = self.tiny(h) * 2.0**20
        z = torch.relu(self.back(s))
        return self.head(self.huge(z) * 1e-5)


def sample_batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 16, generator=g), torch.randn(8, 4, generator=g)
"""

HEALTHY = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 4))

    def forward(self, x):
        return self.body(x)


def sample_batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 16, generator=g), torch.randn(8, 4, generator=g)
"""


def load(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, Any], Path]:
    from tests.conftest import run_cli

    path = tmp_path_factory.mktemp("formats") / "ranges.py"
    path.write_text(textwrap.dedent(MODEL))
    result = run_cli("analyze", str(path), "--device", "cpu", "--format", "json", "--batches", "1",
                     "--precision", "fp16,bf16")  # fmt: skip
    assert result.exit_code in (0, 1), result
    return result.exit_code, json.loads(result.stdout), path


def layer(report: dict[str, Any], fmt: str, name: str) -> dict[str, Any]:
    (headroom,) = [f for f in report["precision"]["formats"] if f["format"] == fmt]
    (row,) = [r for r in headroom["layers"] if r["name"] == name]
    return row


def reference(path: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor, nn.Module]]:
    """Plain PyTorch: each layer's input and output on the batch, in float32."""
    module = load(path)
    net, (x, _) = module.Net(), module.sample_batch()
    seen: dict[str, tuple[torch.Tensor, torch.Tensor, nn.Module]] = {}

    def keep(name: str) -> Any:
        def hook(module: nn.Module, args: Any, out: torch.Tensor) -> None:
            seen[name] = (args[0], out, module)

        return hook

    handles = [child.register_forward_hook(keep(name)) for name, child in net.named_children()]
    with torch.no_grad():
        net(x)
    for handle in handles:
        handle.remove()
    return seen


def relative_error(low: torch.Tensor, full: torch.Tensor) -> float:
    low = torch.where(torch.isfinite(low), low, torch.zeros(()))
    return float(
        torch.linalg.vector_norm(low.double() - full.double()) / torch.linalg.vector_norm(full.double())
    )


def test_outputs_around_2_pow_minus_20_underflow_fp16_only(run: tuple[int, dict[str, Any], Path]) -> None:
    _, report, path = run
    _, out, _ = reference(path)["tiny"]
    nonzero = out != 0
    fp16_share = float(((out.abs() < 2.0**-14) & nonzero).sum() / nonzero.sum())
    bf16_share = float(((out.abs() < 2.0**-126) & nonzero).sum() / nonzero.sum())
    assert fp16_share == 1.0 and bf16_share == 0.0  # the fixture is what it says
    assert layer(report, "fp16", "tiny")["activation_underflow"] == 1.0
    assert layer(report, "bf16", "tiny")["activation_underflow"] == 0.0
    assert layer(report, "fp16", "tiny")["verdict"] == KEEP_HIGHER
    assert layer(report, "bf16", "tiny")["verdict"] == "fine"


def test_outputs_around_1e5_overflow_fp16(run: tuple[int, dict[str, Any], Path]) -> None:
    _, report, path = run
    _, out, _ = reference(path)["huge"]
    expected = float((out.abs() > 65504).sum() / (out != 0).sum())
    assert 0.1 < expected < 1.0
    row = layer(report, "fp16", "huge")
    assert row["activation_overflow"] == pytest.approx(expected)
    assert row["verdict"] == KEEP_HIGHER and row["cause"] == "overflow"
    assert layer(report, "bf16", "huge")["activation_overflow"] == 0.0
    assert layer(report, "bf16", "huge")["verdict"] == "fine"


def test_every_keep_verdict_is_backed_by_the_measured_error_of_casting_the_layer(
    run: tuple[int, dict[str, Any], Path],
) -> None:
    _, report, path = run
    layers = reference(path)
    keeps = 0
    for headroom in report["precision"]["formats"]:
        dtype = getattr(torch, number_format(headroom["format"]).dtype)
        for row in headroom["layers"]:
            x, out, module = layers[row["name"]]
            # the layer run in the format, by hand: input and weights cast, output compared with float32
            with torch.no_grad():
                low = torch.func.functional_call(
                    module, {n: p.to(dtype) for n, p in module.named_parameters()}, (x.to(dtype),)
                )
            assert row["confirmed_error"] == pytest.approx(relative_error(low.float(), out), rel=1e-3)
            if row["verdict"] == KEEP_HIGHER:
                keeps += 1
                deciding = max(row["confirmed_error"], row["grad_error_scaled"])
                assert deciding > headroom["tolerance"], row
    assert keeps >= 2


def test_json_section_has_the_contract_fields(run: tuple[int, dict[str, Any], Path]) -> None:
    code, report, _ = run
    formats = report["precision"]["formats"]
    assert [f["format"] for f in formats] == ["fp16", "bf16"]
    for headroom in formats:
        assert {"format", "layers", "loss_scale", "tolerance", "method"} <= set(headroom)
        assert {"min", "max", "suggested", "fits"} <= set(headroom["loss_scale"])
        assert [r["name"] for r in headroom["layers"]] == ["fc1", "tiny", "back", "huge", "head"]
        for row in headroom["layers"]:
            assert {"name", "activation_underflow", "activation_overflow", "grad_underflow", "grad_overflow",
                    "verdict", "confirmed_error"} <= set(row)  # fmt: skip
    assert code == 1  # an error finding: a layer to keep in float32 fails the CI gate
    found = {
        (f["id"], f["evidence"]["format"]): f for f in report["findings"] if f["id"].startswith("precision-")
    }
    assert "huge" in found["precision-overflow", "fp16"]["layers"]
    assert "tiny" in found["precision-underflow", "fp16"]["layers"]
    assert not any(fmt == "bf16" for _, fmt in found)


def test_fp16_loss_scale_range_follows_the_measured_gradients(run: tuple[int, dict[str, Any], Path]) -> None:
    _, report, _ = run
    (fp16,) = [f for f in report["precision"]["formats"] if f["format"] == "fp16"]
    scale = fp16["loss_scale"]
    assert scale["max"] == pytest.approx(65504 / scale["max_grad"])
    assert scale["min"] == pytest.approx(2.0**-24 / scale["small_grad"])
    assert scale["fits"] == (scale["min"] <= scale["max"])
    assert scale["suggested"] <= scale["max"] and math.log2(scale["suggested"]).is_integer()


def test_healthy_model_is_fine_in_bf16_and_exit_0(cli, tmp_path: Path) -> None:
    path = tmp_path / "healthy.py"
    path.write_text(textwrap.dedent(HEALTHY))
    result = cli(
        "analyze", str(path), "--device", "cpu", "--format", "json", "--batches", "1", "--precision", "bf16"
    )
    assert result.exit_code == 0, result
    report = json.loads(result.stdout)
    assert all(r["verdict"] == "fine" for r in report["precision"]["formats"][0]["layers"])
    assert not [f for f in report["findings"] if f["id"].startswith("precision-")]


def test_unknown_format_is_exit_2_with_a_hint(cli) -> None:
    result = cli("analyze", "builtin:residual-mlp", "--precision", "fp12")
    assert result.exit_code == 2, result
    assert "--precision: unknown number format 'fp12'" in result.stderr
    assert "fp16" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_file_key(cli, tmp_path: Path) -> None:
    path = tmp_path / "healthy.py"
    path.write_text(textwrap.dedent(HEALTHY))
    config = tmp_path / "gradcheck.yaml"
    config.write_text("precision: [fp8-e4m3]\n")
    result = cli("analyze", str(path), "--config", str(config), "--device", "cpu", "--format", "json",
                 "--batches", "1")  # fmt: skip
    assert result.exit_code in (0, 1), result
    (headroom,) = json.loads(result.stdout)["precision"]["formats"]
    assert headroom["format"] == "fp8-e4m3" and "rounded through float8_e4m3fn" in headroom["method"]
    config.write_text("precision: fp8\n")
    bad = cli("analyze", "builtin:residual-mlp", "--config", str(config))
    assert bad.exit_code == 2 and "unknown number format 'fp8'" in bad.stderr


# -- the arithmetic, against plain torch ------------------------------------------------------------
def test_counts_match_direct_comparisons() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, generator=g) * torch.exp2(torch.randint(-40, 20, (4000,), generator=g).float())
    x[:50] = 0.0
    formats = NUMBER_FORMATS
    counts = Counts([f.max for f in formats])
    counts.add(x[:1000])
    counts.add(x[1000:])
    (host,) = to_host([counts])
    a = x.abs()
    assert host.nonzero == int((a != 0).sum())
    for power in (-30, -24, -14, -6, 0, 10):
        assert host.below(power) == int(((a < 2.0**power) & (a != 0)).sum()), power
    for i, fmt in enumerate(formats):
        assert host.over[i] == int((a > fmt.max).sum())
    assert host.peak == float(a.max())


def test_loss_scale_algebra() -> None:
    fp16 = number_format("fp16")
    # gradients from 2^-30 (1% quantile in [2^-31, 2^-30)) to 1000: S from 2^-24 / 2^-31 = 128 to 65.504
    grads = GradientRange(nonzero=100, peak=1000.0, small_power=-30, underflow=50, overflow=0)
    scale = loss_scale(grads, fp16)
    assert scale.min == 128.0 and scale.max == pytest.approx(65.504)
    assert not scale.fits and scale.suggested == 64.0  # no overflow wins
    fine = GradientRange(nonzero=100, peak=1.0, small_power=-10, underflow=0, overflow=0)
    assert loss_scale(fine, fp16).suggested == 1.0 and loss_scale(fine, fp16).fits


@pytest.mark.parametrize("rule_id", ["precision-overflow", "precision-underflow", "precision-rounding"])
def test_rules_are_registered_and_documented(rule_id: str) -> None:
    spec = get_rule(rule_id)
    assert spec is not None
    for section in DOC_SECTIONS:
        assert f"## {section}" in spec.doc


def test_fp8_per_tensor_scale_is_the_recipes_power_of_two() -> None:
    from gradcheck_cli.measure.format_counts import rounded, tensor_scale

    e4m3 = number_format("fp8-e4m3")
    x = torch.tensor([1e6, 0.1, -3.0, 0.0])
    scale = float(tensor_scale(x, e4m3))
    assert scale == 2.0 ** math.floor(math.log2(448 / 1e6)) == 2.0**-12
    by_hand = (x * scale).to(torch.float8_e4m3fn).float() / scale
    assert torch.equal(rounded(x, e4m3, tensor_scale(x, e4m3)), by_hand)
    assert by_hand[1] == 0.0  # 0.1 * 2^-12 is below half of e4m3's smallest subnormal 2^-9: lost
    assert float(tensor_scale(torch.zeros(3), e4m3)) == 1.0


@pytest.mark.parametrize(
    ("fmt", "marker"),
    [("markdown", "**Number-format headroom**"), ("html", "<h2>Number-format headroom</h2>")],
)
def test_markdown_and_html_show_the_tables(cli, tmp_path: Path, fmt: str, marker: str) -> None:
    path = tmp_path / "healthy.py"
    path.write_text(textwrap.dedent(HEALTHY))
    result = cli(
        "analyze", str(path), "--device", "cpu", "--format", fmt, "--batches", "1", "--precision", "fp16"
    )
    assert result.exit_code == 0, result
    assert marker in result.stdout
    assert "fp16: 0 to keep in higher precision" in result.stdout
    assert "act under/over" in result.stdout and "loss scale" in result.stdout
