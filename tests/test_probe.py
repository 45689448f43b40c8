"""The probe against closed forms: a linear chain of weights a*I."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradcheck_cli.judge.diagnose import diagnose
from gradcheck_cli.measure.probe import GradientProbe
from gradcheck_cli.records.stats import ModelInfo, ProbeResult, RunInfo


def chain(a: float, depth: int, width: int = 8) -> nn.Sequential:
    layers = [nn.Linear(width, width, bias=False) for _ in range(depth)]
    with torch.no_grad():
        for layer in layers:
            layer.weight.copy_(a * torch.eye(width))
    return nn.Sequential(*layers)


def probe_chain(model: nn.Module, batches: int = 2, width: int = 8) -> ProbeResult:
    generator = torch.Generator().manual_seed(0)
    with GradientProbe(model) as probe:
        for _ in range(batches):
            model.zero_grad(set_to_none=True)
            x = torch.randn(4, width, generator=generator)
            g = torch.randn(4, width, generator=generator)
            (model(x) * g).sum().backward()
            probe.collect()
        layers = probe.layer_stats()
    return ProbeResult(
        model=ModelInfo(class_name="chain", parameters=0, trainable=0, device="cpu", dtype="float32"),
        run=RunInfo(batches=batches, steps=0, seed=0, loss="sum"),
        layers=layers,
    )


@pytest.mark.parametrize("a", [0.5, 0.8, 1.3, 2.0])
def test_output_gradient_shrinks_by_exactly_a_per_layer(a: float) -> None:
    depth = 10
    result = probe_chain(chain(a, depth))
    last = result.layers[-1].act_grad_rms
    for layer in result.layers:
        expected = a ** (depth - 1 - layer.index)
        assert layer.act_grad_rms / last == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("a", [0.5, 2.0])
def test_parameter_gradient_norms_are_equal_in_every_layer(a: float) -> None:
    result = probe_chain(chain(a, 10))
    norms = [layer.grad_norm for layer in result.layers]
    assert max(norms) / min(norms) == pytest.approx(1.0, rel=1e-4)


def test_parameter_gradient_norm_matches_closed_form() -> None:
    # One sample: dL/dW_l = a^(L-1) g x^T, so its norm is a^(L-1) |g| |x|.
    a, depth, width = 0.7, 6, 5
    model = chain(a, depth, width)
    x, g = torch.randn(1, width), torch.randn(1, width)
    with GradientProbe(model) as probe:
        (model(x) * g).sum().backward()
        probe.collect()
        layers = probe.layer_stats()
    expected = a ** (depth - 1) * g.norm().item() * x.norm().item()
    for layer in layers:
        assert layer.grad_norm == pytest.approx(expected, rel=1e-4)
        assert layer.weight_norm == pytest.approx(a * math.sqrt(width), rel=1e-5)


@pytest.mark.parametrize(
    ("a", "depth", "expected"),
    [
        (0.5, 12, "vanishing-gradients"),  # 0.5^11 = 4.9e-4: past 3 orders
        (0.9, 12, None),  # 0.9^11 = 0.31
        (1.1, 12, None),
        (2.0, 12, "exploding-gradients"),  # 2^11 = 2048... past 3 orders
        (0.6, 8, None),  # 0.6^7 = 0.028: under 3 orders
    ],
)
def test_verdict_switches_at_three_orders(a: float, depth: int, expected: str | None) -> None:
    findings = diagnose(probe_chain(chain(a, depth))).findings
    ids = {f.id for f in findings}
    assert ids == ({expected} if expected else set())


def test_vanishing_evidence_explains_both_measurements() -> None:
    finding = diagnose(probe_chain(chain(0.5, 12))).findings[0]
    ev = finding.evidence
    assert ev["threshold"] == 3.0
    assert ev["orders"] == pytest.approx(11 * math.log10(0.5), abs=0.01)
    assert ev["first_to_last"] == pytest.approx(0.5**11, rel=1e-2)
    assert "grad_weight_ratio" in ev and "grad_weight_floor" in ev
    assert finding.layers[0] == "0"


def test_hooks_removed_and_mode_restored_even_on_error() -> None:
    model = chain(1.0, 3)
    model.eval()
    with pytest.raises(RuntimeError), GradientProbe(model):
        assert model.training
        model(torch.randn(2, 3))  # wrong width: raises inside the probe
    assert not model.training
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks


def test_inplace_relu_after_conv_works() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Conv2d(4, 2, 3), nn.ReLU(inplace=True)
    )
    with GradientProbe(model) as probe:
        model(torch.randn(2, 3, 8, 8)).sum().backward()
        probe.collect()
        layers = probe.layer_stats()
    assert [layer.name for layer in layers] == ["0", "2"]
    assert all(layer.act_grad_norm > 0 for layer in layers)


def test_layers_in_execution_order_not_registration_order() -> None:
    class Reversed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.second = nn.Linear(4, 4)
            self.first = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.second(self.first(x))

    model = Reversed()
    with GradientProbe(model) as probe:
        model(torch.randn(2, 4)).sum().backward()
        probe.collect()
        names = [layer.name for layer in probe.layer_stats()]
    assert names == ["first", "second"]


def test_reset_starts_a_fresh_measurement_with_the_same_hooks() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    first, second = torch.randn(5, 4), torch.randn(5, 4)

    def measure(probe: GradientProbe, x: torch.Tensor) -> list[tuple[float, float]]:
        model.zero_grad(set_to_none=True)
        model(x).sum().backward()
        probe.collect()
        return [(s.grad_norm, s.act_grad_norm) for s in probe.layer_stats()]

    with GradientProbe(model) as fresh:
        expected = measure(fresh, second)
        expected_dead = [a.dead_fraction for a in fresh.activation_stats()]
    with GradientProbe(model) as reused:
        measure(reused, first)
        reused.reset()
        assert measure(reused, second) == expected
        assert [a.dead_fraction for a in reused.activation_stats()] == expected_dead
