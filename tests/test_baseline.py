"""Baselines: an unchanged model passes with another seed; a deeper model or a saturating
activation fails; `gradcheck compare` prints the difference. Real runs of small builtins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gradcheck_cli.judge.baseline import REGRESSION_ID, compare_documents

BASE = ["builtin:tanh-mlp", "--device", "cpu", "--batches", "2", "-a", "width=32", "-a", "depth=4"]


@pytest.fixture(scope="module")
def baseline_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import run_cli

    path = tmp_path_factory.mktemp("baseline") / "baseline.json"
    result = run_cli("analyze", *BASE, "--format", "json", "--output", str(path))
    assert result.exit_code == 0, result
    return path


def analyze_against(baseline: Path, *extra: str) -> tuple[int, dict]:
    from conftest import run_cli

    result = run_cli("analyze", *BASE, *extra, "--baseline", str(baseline), "--format", "json")
    assert result.exit_code in (0, 1), result
    return result.exit_code, json.loads(result.stdout)


def test_same_model_another_seed_passes(baseline_file: Path) -> None:
    code, doc = analyze_against(baseline_file, "--seed", "1")
    assert code == 0
    assert doc["baseline"]["regressed"] is False
    assert not [f for f in doc["findings"] if f["id"] == REGRESSION_ID]


def test_deeper_model_regresses(baseline_file: Path) -> None:
    code, doc = analyze_against(baseline_file, "-a", "depth=16")
    assert code == 1
    (regression,) = [f for f in doc["findings"] if f["id"] == REGRESSION_ID]
    assert "vanishing-gradients" in regression["evidence"]["new_findings"]
    assert "layers.0" in regression["layers"]  # the first layer's ratio fell by orders


def test_saturating_activation_regresses(baseline_file: Path) -> None:
    code, doc = analyze_against(baseline_file, "-a", "activation=sigmoid")
    assert code == 1
    worse = {layer["name"]: layer["orders"] for layer in doc["baseline"]["regressed_layers"]}
    assert worse["layers.0"] < -1.0  # measured: sigmoid cuts layers.0's ratio by more than an order


def test_a_wider_limit_accepts_the_same_change(baseline_file: Path) -> None:
    code, doc = analyze_against(baseline_file, "-a", "activation=sigmoid", "--baseline-orders", "3")
    assert doc["baseline"]["regressed_layers"] == []
    assert code == (1 if doc["baseline"]["new_findings"] else 0)


def test_findings_already_in_the_baseline_are_accepted(tmp_path: Path) -> None:
    old = {"layers": [{"name": "a", "grad_weight_ratio": 1e-6, "status": "vanishing"}],
           "findings": [{"id": "vanishing-gradients"}]}  # fmt: skip
    new = {"layers": [{"name": "a", "grad_weight_ratio": 3e-6, "status": "vanishing"}],
           "findings": [{"id": "vanishing-gradients"}]}  # fmt: skip
    comparison = compare_documents(old, new, 1.0)
    assert not comparison.regressed and comparison.kept_findings == ("vanishing-gradients",)
    fixed = {"layers": [{"name": "a", "grad_weight_ratio": 1e-2, "status": "ok"}], "findings": []}
    assert not compare_documents(old, fixed, 1.0).regressed  # rising out of vanishing is the fix
    gone = {"layers": [{"name": "a", "grad_weight_ratio": 0.0, "status": "no-grad"}], "findings": []}
    assert compare_documents(old, gone, 1.0).regressed


def test_compare_command_prints_a_table(baseline_file: Path, tmp_path: Path, cli) -> None:
    deeper = tmp_path / "deeper.json"
    cli("analyze", *BASE, "-a", "activation=sigmoid", "--format", "json", "--output", str(deeper))
    result = cli("compare", str(baseline_file), str(deeper))
    assert result.exit_code == 1
    header = result.stdout.splitlines()[0].split()
    assert header[:3] == ["layer", "old", "grad/w"]
    assert any(line.startswith("layers.0") and "REGRESSED" in line for line in result.stdout.splitlines())
    assert cli("compare", str(baseline_file), str(baseline_file)).exit_code == 0
    bad = cli("compare", str(baseline_file), str(tmp_path / "missing.json"))
    assert bad.exit_code == 2 and "not found" in bad.stderr
