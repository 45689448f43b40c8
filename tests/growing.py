"""Small models for trend and integration tests: a layer whose gradient grows on a schedule,
and a model that goes non-finite at a chosen step. Our own fixtures, plain torch."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ScaleGrad(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by `scale` (the forward is untouched)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


class GrowingGradNet(nn.Module):
    """enc -> tanh -> head; enc's gradient is multiplied by 2 ** (step / doubling) when `step` is set."""

    def __init__(self, doubling: float | None = 50.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.enc = nn.Linear(8, 16)
        self.head = nn.Linear(16, 4)
        self.doubling = doubling
        self.step = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.enc(x)
        if self.doubling is not None:
            h = ScaleGrad.apply(h, 2.0 ** (self.step / self.doubling))
        return self.head(torch.tanh(h))


class GoesNonfinite(nn.Module):
    """enc -> relu -> mid -> head; from training forward number `at` on, sqrt(h - h.min()) after enc.

    sqrt has an infinite slope at 0, so at that step enc's gradient (first in backward order
    among the affected layers) turns NaN/inf while the loss is still finite; the optimizer
    step then writes NaN into enc's weights, and the next loss is NaN."""

    def __init__(self, at: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.enc = nn.Linear(8, 16)
        self.mid = nn.Linear(16, 16)
        self.head = nn.Linear(16, 4)
        self.at = at
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.enc(x)
        if self.training:
            if self.calls >= self.at:
                h = torch.sqrt(h - h.min())
            self.calls += 1
        return self.head(torch.relu(self.mid(torch.relu(h))))
