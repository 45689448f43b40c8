"""Every finding id (fp16-underflow aside: it needs --dtype float16) fires on a model built to have it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gradcheck_cli.config.analyze_config import build_config
from gradcheck_cli.records.findings import Finding, Severity
from gradcheck_cli.records.report import Report
from gradcheck_cli.render.json import to_document
from gradcheck_cli.run.pipeline import analyze_target

FAULTS = Path(__file__).parent / "fixtures" / "faults"


def run(target: str, **flags: object) -> Report:
    path = target if target.startswith("builtin:") else str(FAULTS / target)
    return analyze_target(build_config(path, {"batches": 2, **flags}, {}))


def only(report: Report, finding_id: str) -> Finding:
    found = [f for f in report.findings if f.id == finding_id]
    assert len(found) == 1, report.findings
    return found[0]


@pytest.mark.parametrize(
    ("target", "finding_id", "severity"),
    [
        ("builtin:sigmoid-mlp", "vanishing-gradients", Severity.ERROR),
        ("sigmoid_stack.py", "vanishing-gradients", Severity.ERROR),
        ("builtin:relu-mlp-bad-init", "exploding-gradients", Severity.ERROR),
        ("vanilla_rnn.py", "vanishing-through-time", Severity.ERROR),
        ("exploding_rnn.py", "exploding-through-time", Severity.ERROR),
        ("dead_module.py", "dead-units", Severity.ERROR),
        ("functional_dead.py", "dead-units", Severity.ERROR),
        ("saturated.py", "saturated-activations", Severity.ERROR),  # passes 0.3% of the gradient
        ("nonfinite_sqrt.py", "nonfinite-gradients", Severity.ERROR),
        ("no_gradient.py", "no-gradient", Severity.ERROR),
    ],
)
def test_finding_fires(target: str, finding_id: str, severity: Severity) -> None:
    assert only(run(target), finding_id).severity is severity


def test_dead_relu_is_not_also_reported_as_vanishing() -> None:
    report = run("dead_module.py")
    assert [f.id for f in report.findings] == ["dead-units"]


def test_functional_activations_are_seen_and_named() -> None:
    report = run("saturated.py")
    names = {a.name: a for a in report.activations}
    assert names["act1"].family == "tanh"
    (sigmoid,) = [a for a in report.activations if a.type == "torch.sigmoid"]
    assert sigmoid.after == "fc2" and sigmoid.saturated_fraction > 0.5
    assert sigmoid.source is not None and sigmoid.source.line == 20


def test_no_gradient_tells_never_called_from_cut_off() -> None:
    finding = only(run("no_gradient.py"), "no-gradient")
    assert finding.evidence["never_called"] == ["unused"]
    assert finding.evidence["cut_off"] == ["encoder"]


def test_nonfinite_names_the_first_module_and_the_forward_op() -> None:
    finding = only(run("nonfinite_sqrt.py"), "nonfinite-gradients")
    assert finding.evidence["first_in_backward"] == "fc1"
    assert finding.evidence["forward_op"] == "sqrt"
    assert str(finding.evidence["op_where"]).endswith("nonfinite_sqrt.py:15")
    assert "torch.sqrt(x + 1e-8)" in finding.suggestions[0].text


def test_nonfinite_from_the_forward_pass_names_the_op_that_made_it() -> None:
    finding = only(run("nonfinite_log.py"), "nonfinite-gradients")
    assert finding.evidence["forward_op"] == "log"
    assert str(finding.evidence["op_where"]).endswith("nonfinite_log.py:14")
    assert "forward pass" in finding.message


def test_gated_cell_with_a_short_horizon_is_a_warning_with_the_init_fix() -> None:
    report = run("builtin:lstm", batches=1, arch_opts={"gate_bias": 0.0, "seq_len": 60})
    finding = only(report, "vanishing-through-time")
    assert finding.severity is Severity.WARNING
    assert [s.fix for s in finding.suggestions] == ["init"]
    assert "bias_ih_l0[64:128]" in finding.suggestions[0].text


def test_steps_record_how_the_gradient_moved() -> None:
    report = run("builtin:relu-mlp-bad-init", batches=1, steps=2, lr=0.01, arch_opts={"depth": 4})
    training = to_document(report)["training"]
    assert isinstance(training, dict)
    assert len(training["loss"]) == 2
    assert all(len(norms) == 2 for norms in training["grad_norms"].values())
