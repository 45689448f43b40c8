"""The private torch names gradcheck relies on, in one place (a torch release renaming one
breaks here, not in five modules)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn.modules.batchnorm import _NormBase as NormBase
from torch.nn.modules.conv import _ConvNd as ConvNd

__all__ = ["ConvNd", "NormBase", "foreach_norm", "queue_after_backward"]

# NormBase: BatchNorm1d/2d/3d, InstanceNorm and SyncBatchNorm share this base.
# ConvNd: Conv1d/2d/3d and their transposed forms share this base.
foreach_norm = torch._foreach_norm
"""One kernel launch for the norms of many tensors (torch.linalg.vector_norm per tensor otherwise)."""


def queue_after_backward(callback: Callable[[], None]) -> None:
    """Run `callback` once the backward pass now executing has finished (every .grad accumulated).

    Only valid from inside a backward hook. The autograd engine's callback queue is what
    FSDP uses for the same purpose; it has no public name."""
    torch.autograd.Variable._execution_engine.queue_callback(callback)
