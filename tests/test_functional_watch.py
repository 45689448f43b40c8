"""Functional activations are watched only while a model has them (the mode costs 5-10% a step)."""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.nn import functional as F

from gradcheck_cli.measure.functional import FunctionalActivations


class ModulesOnly(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.act = nn.Linear(4, 4), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(x))


class Functional(ModulesOnly):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc(x))


def test_stops_watching_after_a_pass_without_functional_activations() -> None:
    model, seen = ModulesOnly(), FunctionalActivations()
    with seen.watch():
        model(torch.randn(2, 4))
    assert isinstance(seen.watch(), contextlib.nullcontext)
    assert seen.stats() == ()


def test_keeps_watching_a_model_that_calls_F_relu() -> None:
    model, seen = Functional(), FunctionalActivations()
    for _ in range(3):
        with seen.watch():
            model(torch.randn(2, 4))
    assert seen.watch() is seen
    (stats,) = seen.stats()
    assert stats.family == "relu" and stats.units == 4
