"""The extension point for per-layer measurements: a registered Measurement is taken after every
backward, combined over batches, and lands in LayerStats.measures, checked against plain PyTorch."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import pytest
import torch
from torch import nn

from gradcheck_cli.measure import measurements
from gradcheck_cli.measure.probe import GradientProbe


@pytest.fixture
def peak_measurement() -> Iterator[str]:
    """A measurement registered for one test: the largest |gradient element| of a layer's own
    parameters, the largest over batches."""

    def grad_max_abs(module: nn.Module, grads: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack([g.abs().max() for g in grads]).max()

    measurements.measurement("test_grad_max_abs", combine=max)(grad_max_abs)
    yield "test_grad_max_abs"
    measurements.unregister("test_grad_max_abs")


def test_a_registered_measurement_lands_on_every_layer_as_plain_pytorch_computes_it(peak_measurement) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    expected: dict[str, float] = {"0": 0.0, "2": 0.0}
    with GradientProbe(model) as probe:
        for _ in range(3):
            model.zero_grad(set_to_none=True)
            model(torch.randn(4, 6)).square().sum().backward()
            probe.collect()
            for name in expected:
                layer = model.get_submodule(name)
                peak = max(p.grad.abs().max().item() for p in layer.parameters())  # type: ignore[union-attr]
                expected[name] = max(expected[name], peak)
        layers = {layer.name: layer for layer in probe.layer_stats()}
    for name, value in expected.items():
        assert dict(layers[name].measures) == {peak_measurement: pytest.approx(value, rel=1e-6)}
        assert layers[name].measures[peak_measurement] > 0


def test_no_registered_measurement_leaves_the_mapping_empty_and_a_layer_without_gradient_nan(
    peak_measurement,
) -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    model[0].weight.requires_grad_(False)
    model[0].bias.requires_grad_(False)
    with GradientProbe(model) as probe:
        model(torch.randn(2, 4)).sum().backward()
        probe.collect()
        layers = {layer.name: layer for layer in probe.layer_stats()}
    assert math.isnan(layers["0"].measures[peak_measurement])
    measurements.unregister(peak_measurement)
    with GradientProbe(model) as probe:
        model(torch.randn(2, 4)).sum().backward()
        probe.collect()
        assert all(len(layer.measures) == 0 for layer in probe.layer_stats())


def test_a_name_registers_once(peak_measurement) -> None:
    with pytest.raises(RuntimeError, match="duplicate"):
        measurements.measurement(peak_measurement)(lambda module, grads: None)
