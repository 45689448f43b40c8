"""Which torch modules are weight layers and which normalise: shared by the probe and the fixes."""

from __future__ import annotations

from typing import TypeGuard

from torch import nn

from gradcheck_cli.compat import ConvNd, NormBase

NORM_LAYERS = (NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)
"""Modules that normalise their input (batch, layer, group, instance and local response norms)."""
LINEAR_LAYERS = (nn.Linear, ConvNd)
"""Weight layers a fix may rescale or put a normalisation after."""
WEIGHT_LAYERS = (nn.Linear, ConvNd, nn.RNNBase, nn.RNNCellBase, nn.Embedding, nn.MultiheadAttention)
"""Every module whose parameters are weights (the probe's `kind` = "weight")."""


def kind_of(module: nn.Module) -> str:
    if isinstance(module, NORM_LAYERS):
        return "norm"
    if isinstance(module, WEIGHT_LAYERS):
        return "weight"
    return "other"


def has_normalization(model: nn.Module) -> bool:
    return any(isinstance(m, NORM_LAYERS) for m in model.modules())


def is_conv(module: nn.Module) -> TypeGuard[ConvNd]:
    return isinstance(module, ConvNd)
