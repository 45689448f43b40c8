"""The command line: exit codes, --fail-on, streams, messages, JSON, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT

SMALL_SIGMOID = ("builtin:sigmoid-mlp", "--arch-opt", "depth=12", "--arch-opt", "width=32")


def test_vanishing_builtin_exits_1_naming_early_layers_and_fixes(cli) -> None:
    result = cli("analyze", *SMALL_SIGMOID, "--format", "json")
    assert result.exit_code == 1, result
    doc = json.loads(result.stdout)
    finding = next(f for f in doc["findings"] if f["id"] == "vanishing-gradients")
    assert finding["severity"] == "error"
    assert finding["layers"][0] == "layers.0"
    assert {"residual", "layernorm"} <= {s["fix"] for s in finding["suggestions"]}
    assert "vanishing-gradients" in result.stderr  # the short verdict goes to stderr


@pytest.mark.parametrize("name", ["residual-mlp", "bn-cnn", "gru", "lstm", "transformer"])
def test_healthy_builtins_exit_0_without_errors(cli, name: str) -> None:
    result = cli("analyze", f"builtin:{name}", "--format", "json")
    assert result.exit_code == 0, result
    doc = json.loads(result.stdout)
    assert not [f for f in doc["findings"] if f["severity"] == "error"]


def test_fail_on_levels(cli) -> None:
    assert cli("analyze", *SMALL_SIGMOID, "--fail-on", "never", "--format", "json").exit_code == 0
    assert cli("analyze", *SMALL_SIGMOID, "--fail-on", "warning", "--format", "json").exit_code == 1
    assert cli("analyze", "builtin:residual-mlp", "--fail-on", "warning", "--format", "json").exit_code == 0


def test_rich_report_shows_table_bar_and_verdict(cli) -> None:
    result = cli("analyze", *SMALL_SIGMOID)
    assert result.exit_code == 1
    out = result.stdout
    assert "layers.0" in out and "vanishing" in out and "█" in out
    assert "vanishing-gradients" in out and "residual" in out
    assert "\x1b[" not in out  # not a terminal: plain text
    assert max(len(line) for line in out.splitlines()) <= 100


def test_output_file_gets_report_and_terminal_the_verdict(cli, tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.json"
    result = cli("analyze", "builtin:residual-mlp", "--format", "json", "--output", str(target))
    assert result.exit_code == 0
    assert result.stdout == ""
    assert json.loads(target.read_text())["summary"]["status"] == "healthy"
    assert "healthy" in result.stderr and str(target) in result.stderr


def test_same_seed_same_numbers(cli) -> None:
    def layers(seed: str) -> list[dict[str, object]]:
        doc = json.loads(cli("analyze", *SMALL_SIGMOID, "--seed", seed, "--format", "json").stdout)
        return [{k: v for k, v in layer.items()} for layer in doc["layers"]]

    assert layers("3") == layers("3")
    assert layers("3") != layers("4")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("builtin:nope",), ["no built-in architecture 'nope'"]),
        (("builtin:sigmoid-mpl",), ["did you mean 'sigmoid-mlp'"]),
        (("builtin:sigmoid-mlp", "--arch-opt", "dept=3"), ["no option 'dept'", "did you mean 'depth'"]),
        (("builtin:sigmoid-mlp", "--arch-opt", "depth"), ["cannot read --arch-opt 'depth'"]),
        (("builtin:sigmoid-mlp", "--input", "32xabc"), ["cannot read the shape"]),
        (("builtin:sigmoid-mlp", "--input", "int:4x8"), ["without an upper bound"]),
        (("builtin:sigmoid-mlp", "--device", "cuda:3"), ["cuda:3", "available: cpu"]),
        (("builtin:sigmoid-mlp", "--device", "tpu"), ["unknown --device 'tpu'"]),
        (("builtin:sigmoid-mlp", "--dtype", "float8"), ["--dtype must be one of"]),
        (("builtin:sigmoid-mlp", "--fail-on", "errors"), ["did you mean 'error'"]),
        (("builtin:sigmoid-mlp", "--batches", "0"), ["--batches must be an integer from 1 to 1000"]),
        (("builtin:sigmoid-mlp", "--input", "8x5"), ["forward raised", "--input"]),
        (("missing_model.py",), ["missing_model.py not found"]),
        (("",), ["TARGET is empty"]),
    ],
)
def test_bad_input_exits_2_with_one_readable_message(cli, args: tuple[str, ...], words: list[str]) -> None:
    result = cli("analyze", *args, "--format", "json")
    assert result.exit_code == 2, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ")
    for word in words:
        assert word in result.stderr


def test_debug_shows_the_traceback_and_keeps_exit_2(cli) -> None:
    result = cli("analyze", "builtin:nope", "--debug")
    assert result.exit_code == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert "error: no built-in architecture 'nope'" in result.stderr


def test_examples_from_the_readme(cli) -> None:
    vanishing = cli("analyze", str(ROOT / "examples/vanishing_mlp.py"), "--format", "json")
    healthy = cli("analyze", str(ROOT / "examples/healthy_mlp.py"), "--format", "json")
    rnn = cli("analyze", str(ROOT / "examples/char_rnn.py"), "--format", "json")
    assert (vanishing.exit_code, healthy.exit_code, rnn.exit_code) == (1, 0, 1)
    assert json.loads(rnn.stdout)["findings"][0]["id"] == "vanishing-through-time"


def test_where_points_at_the_users_file(cli) -> None:
    doc = json.loads(cli("analyze", str(ROOT / "examples/vanishing_mlp.py"), "--format", "json").stdout)
    finding = doc["findings"][0]
    assert finding["layers"][0] == "hidden.0"
    where = finding["suggestions"][0]["where"]
    assert where.endswith("vanishing_mlp.py:14")  # self.hidden = nn.ModuleList(...)


def test_zoo_lists_every_builtin_first_on_its_line(cli) -> None:
    from gradcheck_cli.load.zoo import ARCHITECTURES

    result = cli("zoo")
    assert result.exit_code == 0
    firsts = [line.split()[0] for line in result.stdout.splitlines()]  # one line each, name first
    assert firsts == [f"builtin:{name}" for name in ARCHITECTURES]
    detailed = cli("zoo", "--options").stdout
    assert "--arch-opt depth=20" in detailed


def test_version(cli) -> None:
    from gradcheck_cli import __version__

    result = cli("--version")
    assert result.exit_code == 0 and __version__ in result.stdout


def test_explain_prints_rule_doc_and_rejects_unknown_ids(cli) -> None:
    result = cli("explain", "vanishing-gradients")
    assert result.exit_code == 0 and "Why it matters" in result.stdout and "## " not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80  # rendered with rich, piped width
    assert "• residual: add skip connections" in result.stdout  # the Fixes lines as a list
    listing = cli("explain")
    assert listing.exit_code == 0
    assert [line.split()[0] for line in listing.stdout.splitlines()][:2] == [
        "accumulation-undivided",
        "attention-collapse",
    ]
    bad = cli("explain", "vanishing-gradient")
    assert bad.exit_code == 2 and "did you mean 'vanishing-gradients'" in bad.stderr
