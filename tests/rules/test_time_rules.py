"""vanishing-through-time and exploding-through-time on hand-built curves."""

from __future__ import annotations

from rule_factories import probe, through

from gradcheck_cli.judge.rules.exploding_through_time import ExplodingTimeLimits, exploding_through_time
from gradcheck_cli.judge.rules.vanishing_through_time import ThroughTimeLimits, vanishing_through_time
from gradcheck_cli.records.findings import Severity


def decay(factor: float, steps: int) -> list[float]:
    return [factor ** (steps - 1 - t) for t in range(steps)]


def vanishing(tt):  # type: ignore[no-untyped-def]
    return list(vanishing_through_time(probe(through_time=(tt,)), ThroughTimeLimits()))


def test_vanilla_rnn_that_forgets_is_an_error_with_gated_replacements() -> None:
    (finding,) = vanishing(through(decay(0.55, 200), per_step_factor=0.55))
    assert finding.severity is Severity.ERROR
    assert [s.fix for s in finding.suggestions] == ["gru", "lstm", "clip"]
    assert "nn.GRU(8, 32, batch_first=True)" in finding.suggestions[0].text
    assert finding.evidence["horizon"] == 11
    assert len(finding.evidence["curve"]) == 200  # type: ignore[arg-type]


def test_gated_cell_with_a_short_horizon_is_a_warning_with_the_gate_bias_fix() -> None:
    (finding,) = vanishing(through(decay(0.65, 200), type="LSTM"))
    assert finding.severity is Severity.WARNING
    assert [s.fix for s in finding.suggestions] == ["init"]
    assert "forget-gate bias" in finding.suggestions[0].text


def test_horizon_over_half_the_sequence_is_healthy() -> None:
    assert vanishing(through(decay(0.96, 200), type="GRU")) == []


def test_short_sequences_are_not_judged() -> None:
    assert vanishing(through(decay(0.1, 6))) == []


def test_growth_is_exploding_through_time_with_clip() -> None:
    tt = through(decay(1.5, 30), per_step_factor=1.5)
    (finding,) = exploding_through_time(probe(through_time=(tt,)), ExplodingTimeLimits())
    assert finding.severity is Severity.ERROR
    assert finding.suggestions[0].fix == "clip"
    assert vanishing(tt) == []
