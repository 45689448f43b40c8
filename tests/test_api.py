"""gradcheck_cli.analyze(model, ...): the CLI's analysis and report, from Python."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import torch
from torch import nn

import gradcheck_cli
from gradcheck_cli.load.zoo.mlp import plain_mlp
from gradcheck_cli.records.errors import InputError
from gradcheck_cli.records.report import Report

TANH = {"depth": 20, "width": 32, "in_features": 8, "classes": 4, "batch": 8, "activation": "tanh"}


def tanh_mlp() -> nn.Module:
    torch.manual_seed(0)  # the CLI seeds before building a builtin
    return plain_mlp(**TANH)


def small() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def test_same_document_as_the_cli(cli: Any) -> None:
    opts = [f"--arch-opt={k}={v}" for k, v in TANH.items() if k != "activation"]
    result = cli("analyze", "builtin:tanh-mlp", "--format", "json", "--device", "cpu", *opts)
    from_cli = json.loads(result.stdout)
    report = gradcheck_cli.analyze(tanh_mlp(), inputs="8x8", batches=3)
    from_api = json.loads(report.to_json())
    assert {f["id"] for f in from_api["findings"]} == {f["id"] for f in from_cli["findings"]}
    assert "vanishing-gradients" in {f["id"] for f in from_api["findings"]}
    assert report.exit_code() == result.exit_code == 1
    for got, want in zip(from_api["layers"], from_cli["layers"], strict=True):
        assert (got["name"], got["status"]) == (want["name"], want["status"])
        assert got["grad_norm"] == pytest.approx(want["grad_norm"], rel=1e-6)


def test_report_is_the_renderers_report_and_to_json_is_the_contract() -> None:
    report = gradcheck_cli.analyze(small(), inputs=torch.randn(6, 8))
    assert isinstance(report, Report)
    document = json.loads(report.to_json())
    assert document["schema"] == "gradcheck.report/1"
    assert [layer["name"] for layer in document["layers"]] == ["0", "2"]
    assert set(document) >= {"tool", "target", "model", "run", "layers", "findings", "summary"}
    assert report.to_dict() == document
    assert "gradcheck" in report.render("rich", width=80)


def test_batches_with_targets_go_to_loss_fn() -> None:
    seen: list[tuple[int, ...]] = []

    def loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(target.shape))
        return nn.functional.cross_entropy(output, target)

    data = [(torch.randn(5, 8), torch.randint(0, 4, (5,))) for _ in range(2)]
    report = gradcheck_cli.analyze(small(), inputs=data, loss_fn=loss_fn)
    assert report.run.batches == 2
    assert seen == [(5,), (5,)]


def test_batch_function_and_iterable_are_drawn_batches_times() -> None:
    calls = []

    def sample_batch() -> torch.Tensor:
        calls.append(1)
        return torch.randn(4, 8)

    assert gradcheck_cli.analyze(small(), inputs=sample_batch, batches=2).run.batches == 2
    assert len(calls) == 2
    loader = (torch.randn(3, 8) for _ in range(10))
    assert gradcheck_cli.analyze(small(), inputs=loader, batches=4).run.batches == 4


def test_model_stays_on_its_device_and_inputs_are_inferred() -> None:
    report = gradcheck_cli.analyze(small())
    assert report.model.device == "cpu"
    assert report.run.inputs == ("float:16x8",)


def test_unusable_inputs_raise_a_gradcheck_error_with_a_hint() -> None:
    with pytest.raises(InputError) as error:
        gradcheck_cli.analyze(small(), inputs=42)
    assert error.value.hint and "tensor" in error.value.hint


def test_import_stays_torch_free_until_analyze_is_used() -> None:
    code = (
        "import sys, gradcheck_cli; assert 'torch' not in sys.modules; "
        "gradcheck_cli.analyze; gradcheck_cli.GradientMonitor; assert 'torch' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    with pytest.raises(AttributeError):
        _ = gradcheck_cli.not_a_name  # type: ignore[attr-defined]
