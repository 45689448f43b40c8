"""TARGET and --input parsing (no torch)."""

from __future__ import annotations

import pytest

from gradcheck_cli.config.specs import InputSpec, parse_input, parse_target
from gradcheck_cli.records.errors import GradcheckError


@pytest.mark.parametrize(
    ("raw", "kind", "location", "name", "call"),
    [
        ("model.py", "file", "model.py", None, None),
        ("models/net.py:Net", "file", "models/net.py", "Net", None),
        ("pkg.models:build", "module", "pkg.models", "build", None),
        ("builtin:sigmoid-mlp", "builtin", "sigmoid-mlp", None, None),
        (
            'model.py:RNNModel("LSTM", 1000, 200, 200, 2)',
            "file",
            "model.py",
            "RNNModel",
            'RNNModel("LSTM", 1000, 200, 200, 2)',
        ),
        ("model.py:GPT(GPTConfig(n_layer=4))", "file", "model.py", "GPT", "GPT(GPTConfig(n_layer=4))"),
        ("pkg.mod:Net(a={'k': 1})", "module", "pkg.mod", "Net", "Net(a={'k': 1})"),
    ],
)
def test_target_forms(raw: str, kind: str, location: str, name: str | None, call: str | None) -> None:
    ref = parse_target(raw)
    assert (ref.kind, ref.location, ref.name, ref.call) == (kind, location, name, call)


@pytest.mark.parametrize("raw", ["", "builtin:", "model.py:", "model.py:1abc", "just_a_word"])
def test_bad_targets(raw: str) -> None:
    with pytest.raises(GradcheckError):
        parse_target(raw)


@pytest.mark.parametrize(
    ("raw", "spec"),
    [
        ("32x784", InputSpec(shape=(32, 784))),
        ("8x3x32x32", InputSpec(shape=(8, 3, 32, 32))),
        ("int:4x64:1000", InputSpec(shape=(4, 64), kind="int", low=0, high=1000)),
        ("float:16x784:0..1", InputSpec(shape=(16, 784), low=0.0, high=1.0)),
    ],
)
def test_input_forms(raw: str, spec: InputSpec) -> None:
    assert parse_input(raw) == spec


@pytest.mark.parametrize(
    "raw", ["", "32x", "axb", "int:4x64", "int:4x64:abc", "float:4x4:1..0", "float:4:a:b"]
)
def test_bad_inputs(raw: str) -> None:
    with pytest.raises(GradcheckError):
        parse_input(raw)
