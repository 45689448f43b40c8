"""Built-in MLPs: plain deep stacks and a residual pre-LayerNorm twin."""

from __future__ import annotations

import math

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "leaky-relu": nn.LeakyReLU,
}


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        from gradcheck_cli.records.errors import ConfigError

        raise ConfigError(f"unknown activation {name!r}", f"one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class PlainMLP(nn.Module):
    """depth Linear layers with an activation between each: no skips, no normalisation."""

    def __init__(self, depth: int, width: int, in_features: int, classes: int, activation_name: str) -> None:
        super().__init__()
        sizes = [in_features] + [width] * (depth - 1) + [classes]
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(nn.Linear(fan_in, fan_out))
            if i < depth - 1:
                layers.append(activation(activation_name))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def plain_mlp(
    depth: int,
    width: int,
    in_features: int,
    classes: int,
    activation: str,
    batch: int,
    init_gain: float = 0.0,
) -> nn.Module:
    model = PlainMLP(depth, width, in_features, classes, activation)
    if init_gain:
        # A multiple of He scale: gain 1 keeps ReLU signals steady, 2 doubles them per layer.
        for layer in model.layers:
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=init_gain * math.sqrt(2.0 / layer.in_features))
                nn.init.zeros_(layer.bias)
    return model


class ResidualBlock(nn.Module):
    def __init__(self, width: int, activation_name: str) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, 2 * width)
        self.act = activation(activation_name)
        self.fc2 = nn.Linear(2 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(self.act(self.fc1(self.norm(x))))


class ResidualMLP(nn.Module):
    def __init__(self, depth: int, width: int, in_features: int, classes: int, activation_name: str) -> None:
        super().__init__()
        self.stem = nn.Linear(in_features, width)
        self.blocks = nn.ModuleList(ResidualBlock(width, activation_name) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def residual_mlp(
    depth: int, width: int, in_features: int, classes: int, activation: str, batch: int
) -> nn.Module:
    return ResidualMLP(depth, width, in_features, classes, activation)
