"""Through-time measurement against algebra: a scalar linear recurrence h_t = a*h_{t-1} + w*x_t.

An nn.RNN(1, 1, nonlinearity="relu") with W_hh = a, W_ih = w, zero biases and positive
inputs keeps h_t > 0, so the ReLU is the identity and the recurrence is exactly linear:
dh_T/dx_t = w * a^(T-t), and the gradient at step t over the last step's is a^(T-t).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradcheck_cli.judge.rules.vanishing_through_time import ThroughTimeLimits, vanishing_through_time
from gradcheck_cli.measure import through_time
from gradcheck_cli.records.findings import Severity
from gradcheck_cli.records.stats import ModelInfo, ProbeResult, RunInfo


def linear_recurrence(a: float, w: float = 0.5) -> nn.RNN:
    rnn = nn.RNN(1, 1, nonlinearity="relu", batch_first=True)
    with torch.no_grad():
        rnn.weight_hh_l0.fill_(a)
        rnn.weight_ih_l0.fill_(w)
        rnn.bias_hh_l0.zero_()
        rnn.bias_ih_l0.zero_()
    return rnn


def measure(rnn: nn.RNN, steps: int) -> through_time.ThroughTime:
    x = torch.rand(2, steps, 1, generator=torch.Generator().manual_seed(0)) + 0.1
    (tt,) = through_time.measure(rnn, lambda: rnn(x), seed=0, sources={})
    return tt


def probe_with(tt: through_time.ThroughTime) -> ProbeResult:
    return ProbeResult(
        model=ModelInfo(class_name="m", parameters=0, trainable=0, device="cpu", dtype="float32"),
        run=RunInfo(batches=1, steps=0, seed=0, loss="sum"),
        layers=(),
        through_time=(tt,),
    )


@pytest.mark.parametrize("a", [0.5, 0.9, 0.98])
def test_gradient_at_step_t_is_a_to_the_power_steps_back(a: float) -> None:
    steps = 40
    tt = measure(linear_recurrence(a), steps)
    assert tt.steps == steps
    for t, ratio in enumerate(tt.curve):
        expected = a ** (steps - 1 - t)
        if expected > 1e-30:  # float32 keeps these exactly; below that they underflow
            assert ratio == pytest.approx(expected, rel=1e-4)
    assert tt.per_step_factor == pytest.approx(a, rel=1e-4)


@pytest.mark.parametrize("a", [0.5, 0.8, 0.9])
def test_horizon_is_the_steps_before_the_gradient_falls_under_the_floor(a: float) -> None:
    tt = measure(linear_recurrence(a), 60)
    # a^k >= 1e-3  <=>  k <= 3 / -log10(a)
    assert tt.horizon == min(59, math.floor(math.log(tt.horizon_floor) / math.log(a) + 1e-9))


def test_verdict_switches_at_half_the_sequence() -> None:
    steps = 40  # threshold: horizon < 0.5 * 40 = 20 steps
    limits = ThroughTimeLimits()
    short = measure(linear_recurrence(0.70), steps)  # 3 / 0.155 = 19.4 -> horizon 19
    long = measure(linear_recurrence(0.72), steps)  # 3 / 0.143 = 21.0 -> horizon 21
    assert (short.horizon, long.horizon) == (19, 21)
    (finding,) = vanishing_through_time(probe_with(short), limits)
    assert finding.severity is Severity.ERROR  # a vanilla RNN
    assert finding.evidence["threshold"] == 20
    assert [s.fix for s in finding.suggestions][:2] == ["gru", "lstm"]
    assert "nn.GRU(1, 1, batch_first=True)" in finding.suggestions[0].text
    assert list(vanishing_through_time(probe_with(long), limits)) == []


def test_exact_zeros_at_early_steps_are_vanishing_not_missing() -> None:
    tt = measure(linear_recurrence(0.05), 60)  # 0.05^59 underflows float32 to exactly 0
    assert tt.curve[0] == 0.0
    (finding,) = vanishing_through_time(probe_with(tt), ThroughTimeLimits())
    assert finding.id == "vanishing-through-time"


def test_growth_is_exploding_through_time() -> None:
    from gradcheck_cli.judge.rules.exploding_through_time import ExplodingTimeLimits, exploding_through_time

    tt = measure(linear_recurrence(1.3), 40)
    assert tt.curve[0] == pytest.approx(1.3**39, rel=1e-4)
    (finding,) = exploding_through_time(probe_with(tt), ExplodingTimeLimits())
    assert finding.severity is Severity.ERROR and finding.suggestions[0].fix == "clip"


def test_token_inputs_are_measured_at_the_embedding_output() -> None:
    torch.manual_seed(0)
    embed, rnn = nn.Embedding(50, 8), nn.RNN(8, 16, batch_first=True)
    model = nn.Sequential(embed, rnn)
    tokens = torch.randint(0, 50, (2, 30))
    (tt,) = through_time.measure(model, lambda: model(tokens), seed=0, sources={})
    assert (tt.module, tt.steps, tt.input_size) == ("1", 30, 8)
    assert tt.curve[-1] == 1.0 and tt.curve[0] < 1e-3
