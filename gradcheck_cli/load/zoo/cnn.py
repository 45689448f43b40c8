"""Built-in CNNs: a deep plain stack, with or without BatchNorm."""

from __future__ import annotations

import torch
from torch import nn

from gradcheck_cli.load.zoo.mlp import activation as make_activation


class PlainCNN(nn.Module):
    def __init__(self, depth: int, channels: int, classes: int, activation: str, batchnorm: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for _ in range(depth):
            layers.append(nn.Conv2d(in_channels, channels, 3, padding=1, bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm2d(channels))
            layers.append(make_activation(activation))
            in_channels = channels
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


def plain_cnn(
    depth: int, channels: int, size: int, classes: int, batch: int, activation: str, batchnorm: bool
) -> nn.Module:
    model = PlainCNN(depth, channels, classes, activation, batchnorm)
    if batchnorm:
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return model
