"""Parameter gradients reduced on the device: foreach norms and non-zero counts per layer,
brought to the host in one transfer."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gradcheck_cli.measure.compat import foreach_norm


def dense(value: torch.Tensor) -> torch.Tensor:
    """A reduction of an FSDP2 (DTensor) gradient or weight as a plain tensor: the global value."""
    full_tensor = getattr(value, "full_tensor", None)
    return full_tensor() if full_tensor is not None else value


@dataclass(slots=True)
class ParameterGrads:
    """This batch's parameter gradients, grouped by layer, reduced with foreach ops.

    The public face of the probe's parameter statistics: `benchmarks/overhead.py` times it
    alone, and GradientProbe.collect() uses it with the output-gradient norms appended.
    """

    grads: list[torch.Tensor]
    owner: list[int]
    """Per gradient, the index of its group."""
    sizes: list[int]
    """Per gradient, its number of elements."""
    numel: list[int]
    """Per group, the elements of the parameters that have a gradient."""
    has_grad: list[bool]

    @classmethod
    def gather(cls, groups: Sequence[Sequence[nn.Parameter]]) -> ParameterGrads:
        found = cls(grads=[], owner=[], sizes=[], numel=[0] * len(groups), has_grad=[False] * len(groups))
        for i, group in enumerate(groups):
            for p in group:
                grad = p.grad
                if grad is not None:
                    if grad.layout != torch.strided:  # nn.Embedding(sparse=True): the same values
                        grad = grad.to_dense()
                    size = grad.numel()
                    found.grads.append(grad)
                    found.owner.append(i)
                    found.sizes.append(size)
                    found.numel[i] += size
                    found.has_grad[i] = True
        return found

    def device_scalars(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per gradient its L2 norm (float32), and per gradient its count of non-zero elements.

        A norm is non-finite exactly when some element is, so no separate NaN pass is needed.
        """
        if not self.grads:
            return [], []
        # float64 gradients keep their precision (foreach_norm refuses to narrow them).
        wide = self.grads[0].dtype == torch.float64
        norms = foreach_norm(self.grads, 2) if wide else foreach_norm(self.grads, 2, dtype=torch.float32)
        # dense(): FSDP2 shards reduce to their global value (DTensor -> plain tensor).
        return [dense(n) for n in norms], [dense(torch.count_nonzero(g)) for g in self.grads]

    def widen_overflowed(self, host: list[float]) -> None:
        """Where a float32 norm came back inf, its norm again in float64 (in place in `host`).

        A gradient whose elements are all finite but large (7e28 in an exploding GRU) has a
        sum of squares beyond float32: the float32 norm says inf, which is not a NaN/inf event.
        Rare, so the extra pass and transfer cost nothing on a healthy step."""
        wide = [i for i, value in enumerate(host[: len(self.grads)]) if math.isinf(value)]
        if not wide:
            return
        dtype = torch.float32 if self.grads[0].device.type == "mps" else torch.float64
        norms = [dense(torch.linalg.vector_norm(self.grads[i].detach(), dtype=dtype)) for i in wide]
        for i, value in zip(wide, to_host(norms), strict=True):
            host[i] = value

    def per_group(
        self, host: list[float], groups: int, unscale: float = 1.0
    ) -> tuple[list[float], list[float]]:
        """From device_scalars() on the host: per group, squared gradient norm and zero count."""
        grad_sq, zeros = [0.0] * groups, [0.0] * groups
        count = len(self.grads)
        for owner, norm, nonzero, size in zip(
            self.owner, host[:count], host[count:], self.sizes, strict=True
        ):
            grad_sq[owner] += (norm / unscale) ** 2
            zeros[owner] += size - nonzero
        return grad_sq, zeros

    def measure(self, groups: int) -> tuple[list[float], list[float]]:
        """Squared gradient norm and zero count per group, with one host transfer."""
        return self.per_group(to_host(*self.device_scalars()), groups)


def to_host(*groups: list[torch.Tensor]) -> list[float]:
    """Lists of device scalars, each list of one dtype, to Python floats with a single transfer.

    Widened to float64 first (float32 on MPS, which has no float64), so that a count of
    up to 2^53 elements and a squared norm above 3e38 survive.
    """
    stacks = [torch.stack(group) for group in groups if group]
    if not stacks:
        return []
    wide = torch.float32 if stacks[0].device.type == "mps" else torch.float64
    host: list[float] = torch.cat([stack.to(wide) for stack in stacks]).tolist()
    return host


def hook_target(out: torch.Tensor, args: Any) -> torch.Tensor:
    """The tensor whose gradient is dL/d(out): `out`, or the base it is a whole view of.

    nn.Linear on a 3-D or 4-D input returns a view of a 2-D result. An in-place op on that
    view (nn.ReLU(inplace=True)) rewrites the view's history, and a hook on the view never
    fires; a hook on the base, registered before the in-place op, does, with the same values.
    """
    base = out._base
    if base is None or base.numel() != out.numel() or base.grad_fn is None:
        return out
    if any(base is a for a in args if isinstance(a, torch.Tensor)):
        return out  # a view of the module's own input: its base has other uses
    return base


def init_scale(params: list[nn.Parameter], squares: list[float]) -> float:
    """RMS of the first matrix-shaped parameter times sqrt(its fan-in), from its squared norm:
    about 0.58 at PyTorch's default init, 1.4 at He init; far below when small by design."""
    for param, square in zip(params, squares, strict=True):
        if param.dim() >= 2 and param.numel():
            return math.sqrt(square / param.numel() * math.prod(param.shape[1:]))
    return math.nan


def weight_norms(groups: Sequence[Sequence[nn.Parameter]]) -> list[tuple[float, float]]:
    """Per group of parameters, their L2 norm and init_scale, with one host transfer."""
    params = [p for group in groups for p in group]
    if not params:
        return [(0.0, math.nan) for _ in groups]
    with torch.no_grad():
        # one stack, then one widening cast (exact): not a cast per parameter
        stacked = torch.stack([dense(n) for n in foreach_norm([p.detach() for p in params])]).double()
        squares: list[float] = stacked.square().tolist()
    out = []
    it = iter(squares)
    for group in groups:
        own = [next(it) for _ in group]
        out.append((math.sqrt(sum(own)), init_scale(list(group), own)))
    return out
