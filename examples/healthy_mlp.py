"""The same depth with residual connections and LayerNorm: gradients flow.

gradcheck analyze examples/healthy_mlp.py
"""

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc = nn.Linear(width, width)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.act(self.fc(self.norm(x)))


class ResidualMLP(nn.Module):
    def __init__(self, depth: int = 16, width: int = 128, classes: int = 10) -> None:
        super().__init__()
        self.inp = nn.Linear(784, width)
        self.blocks = nn.Sequential(*(Block(width) for _ in range(depth)))
        self.out = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.blocks(self.inp(x)))


def build_model() -> nn.Module:
    return ResidualMLP()


def sample_batch() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.rand(32, 784), torch.randint(0, 10, (32,))
