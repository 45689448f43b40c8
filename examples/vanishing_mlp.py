"""A deep sigmoid MLP: the classic vanishing-gradient network.

gradcheck analyze examples/vanishing_mlp.py
"""

import torch
from torch import nn


class DeepSigmoidMLP(nn.Module):
    def __init__(self, depth: int = 16, width: int = 128, classes: int = 10) -> None:
        super().__init__()
        self.inp = nn.Linear(784, width)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.out = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.sigmoid(self.inp(x))
        for layer in self.hidden:
            x = torch.sigmoid(layer(x))
        return self.out(x)


def build_model() -> nn.Module:
    return DeepSigmoidMLP()


def sample_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """One MNIST-shaped batch, as a DataLoader would yield it: (images, labels)."""
    return torch.rand(32, 784), torch.randint(0, 10, (32,))
