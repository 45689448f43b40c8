"""Which torch modules are weight layers and which normalise: shared by the probe and the fixes."""

from __future__ import annotations

from typing import TypeGuard

import torch
from torch import nn

from gradcheck_cli.measure.compat import ConvNd, NormBase

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


CHANNEL_FIRST = (ConvNd, NormBase, nn.GroupNorm)
CHANNEL_LAST = (nn.Linear, nn.Embedding, nn.LayerNorm, nn.MultiheadAttention, nn.RNNBase, nn.RNNCellBase)


def feature_dim(module: nn.Module, out: torch.Tensor) -> int:
    """The dimension holding a layer's features: channels (dim 1) for convolutions and
    BatchNorm/GroupNorm, the last dimension for Linear/LayerNorm/attention/recurrent layers
    (whatever the rank: a Linear on (B, T, C) has C features, not T*C); else channels of an
    image-like output, or its last dimension."""
    if isinstance(module, CHANNEL_FIRST) and out.dim() > 1:
        return 1
    if isinstance(module, CHANNEL_LAST):
        return out.dim() - 1
    return 1 if out.dim() >= 4 else out.dim() - 1
