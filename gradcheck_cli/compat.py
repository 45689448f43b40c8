"""The private torch names gradcheck relies on, in one place (a torch release renaming one
breaks here, not in five modules)."""

from __future__ import annotations

import torch
from torch.nn.modules.batchnorm import _NormBase as NormBase
from torch.nn.modules.conv import _ConvNd as ConvNd

__all__ = ["ConvNd", "NormBase", "foreach_norm"]

# NormBase: BatchNorm1d/2d/3d, InstanceNorm and SyncBatchNorm share this base.
# ConvNd: Conv1d/2d/3d and their transposed forms share this base.
foreach_norm = torch._foreach_norm
"""One kernel launch for the norms of many tensors (torch.linalg.vector_norm per tensor otherwise)."""
