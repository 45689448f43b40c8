"""Every built-in architecture gets the verdict it was built to show, with JSON per the contract."""

from __future__ import annotations

import json

import pytest

from gradcheck_cli.load.zoo import ARCHITECTURES

LAYER_KEYS = {
    "name",
    "type",
    "index",
    "grad_norm",
    "weight_norm",
    "grad_weight_ratio",
    "act_grad_rms",
    "act_grad_norm",
    "zero_grad_fraction",
    "nonfinite",
    "status",
}
STATUSES = {
    "ok",
    "vanishing",
    "exploding",
    "dead",
    "saturated",
    "nonfinite",
    "no-grad",
    "frozen",
    "gated",
    "not-measured",
}


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_builtin_verdict_and_json_schema(cli, name: str) -> None:
    spec = ARCHITECTURES[name]
    result = cli("analyze", f"builtin:{name}", "--format", "json", "--batches", "2")
    doc = json.loads(result.stdout)
    assert set(doc) >= {"schema", "tool", "target", "model", "run", "layers", "findings", "summary"}
    assert doc["schema"] == "gradcheck.report/1"
    assert set(doc["model"]) >= {"class", "parameters", "trainable", "device", "dtype"}
    assert set(doc["run"]) >= {"batches", "steps", "seed", "loss", "seconds"}
    assert [layer["index"] for layer in doc["layers"]] == list(range(len(doc["layers"])))
    for layer in doc["layers"]:
        assert set(layer) >= LAYER_KEYS and layer["status"] in STATUSES
    errors = {f["id"] for f in doc["findings"] if f["severity"] == "error"}
    if spec.expect == "healthy":
        assert result.exit_code == 0 and not errors, doc["findings"]
    else:
        assert result.exit_code == 1 and spec.expect in errors, doc["findings"]
    for finding in doc["findings"]:
        assert set(finding) == {"id", "severity", "layers", "message", "evidence", "suggestions"}
        if finding["severity"] != "info":  # a verdict carries the bar it crossed; notes have none
            assert "threshold" in finding["evidence"]


def test_vanilla_rnn_measured_through_time_from_the_last_step(cli) -> None:
    doc = json.loads(cli("analyze", "builtin:vanilla-rnn", "--format", "json").stdout)
    tt = doc["through_time"]
    assert tt["module"] == "rnn" and tt["steps"] == 200 and len(tt["curve"]) == 200
    assert tt["curve"][-1] == 1.0
    assert 0.4 < tt["per_step_factor"] < 0.7 and tt["horizon"] < 20


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_gated_cells_with_gate_bias_keep_gradient_over_200_steps(cli, cell: str) -> None:
    doc = json.loads(cli("analyze", f"builtin:{cell}", "--format", "json").stdout)
    assert doc["through_time"]["horizon"] > 100
    biased_off = json.loads(
        cli("analyze", f"builtin:{cell}", "--arch-opt", "gate_bias=0", "--format", "json").stdout
    )
    assert biased_off["through_time"]["horizon"] < 40  # default init forgets within ~20 steps
    assert "vanishing-through-time" in {f["id"] for f in biased_off["findings"]}


def test_arch_opts_change_the_model(cli) -> None:
    doc = json.loads(
        cli("analyze", "builtin:sigmoid-mlp", "--arch-opt", "depth=4", "--format", "json").stdout
    )
    assert len(doc["layers"]) == 4
    assert doc["model"]["init_args"] == {"depth": 4}
