"""Suggestions point at the line of the analysed file that defines the module."""

from __future__ import annotations

from pathlib import Path

from gradcheck_cli.config.analyze_config import build_config
from gradcheck_cli.run.pipeline import analyze_target

FAULTS = Path(__file__).parent / "fixtures" / "faults"


def line_of(file: Path, text: str) -> int:
    return next(i for i, line in enumerate(file.read_text().splitlines(), 1) if text in line)


def findings(name: str) -> dict[str, object]:
    report = analyze_target(build_config(str(FAULTS / name), {"batches": 1}, {}))
    return {f.id: f for f in report.findings}


def test_vanishing_points_at_the_first_layer_assignment() -> None:
    file = FAULTS / "sigmoid_stack.py"
    finding = findings("sigmoid_stack.py")["vanishing-gradients"]
    for suggestion in finding.suggestions:  # type: ignore[attr-defined]
        assert suggestion.where.endswith(f"sigmoid_stack.py:{line_of(file, 'self.fc1 =')}")


def test_rnn_replacement_points_at_the_rnn_and_keeps_its_sizes() -> None:
    file = FAULTS / "vanilla_rnn.py"
    finding = findings("vanilla_rnn.py")["vanishing-through-time"]
    gru = finding.suggestions[0]  # type: ignore[attr-defined]
    assert gru.where.endswith(f"vanilla_rnn.py:{line_of(file, 'self.rnn = nn.RNN')}")
    assert "nn.GRU(16, 32, num_layers=2, batch_first=True)" in gru.text


def test_no_gradient_points_at_the_unused_module() -> None:
    file = FAULTS / "no_gradient.py"
    finding = findings("no_gradient.py")["no-gradient"]
    (fix,) = finding.suggestions  # type: ignore[attr-defined]
    assert fix.text == "call unused in forward or delete it"
    assert fix.where.endswith(f"no_gradient.py:{line_of(file, 'self.unused =')}")


def test_functional_call_points_at_its_own_line() -> None:
    file = FAULTS / "functional_dead.py"
    finding = findings("functional_dead.py")["dead-units"]
    assert finding.suggestions[0].where.endswith(f"functional_dead.py:{line_of(file, 'F.relu(')}")  # type: ignore[attr-defined]
