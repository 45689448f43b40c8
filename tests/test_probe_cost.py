"""The probe's cost, counted rather than timed: host transfers per batch and torch calls per layer."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from gradcheck_cli.measure.probe import GradientProbe

HOST_TRANSFERS = {"tolist", "item", "__float__", "__int__", "__bool__", "numpy", "__index__"}
METADATA = {"__get__", "dim", "numel", "size", "__getitem__"}  # no kernel launched


class CallCounter(TorchFunctionMode):
    """Counts torch functions and tensor methods called while active, forward hooks included.

    Tensor hooks run inside the autograd engine, which the mode does not see; their work
    is counted by test_one_output_gradient_reduction_per_layer_call instead.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.calls[getattr(func, "__name__", str(func))] += 1
        return func(*args, **(kwargs or {}))

    def transfers(self) -> int:
        return sum(n for name, n in self.calls.items() if name in HOST_TRANSFERS)

    def kernels(self) -> int:
        return sum(n for name, n in self.calls.items() if name not in METADATA)


def relu_mlp(depth: int, width: int = 8) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.ReLU(), nn.LayerNorm(width), nn.Tanh()]
    return nn.Sequential(*layers)


def step(model: nn.Module, generator: torch.Generator) -> None:
    model.zero_grad(set_to_none=True)
    model(torch.randn(4, 8, generator=generator)).square().mean().backward()


def count_probe(depth: int, batches: int) -> tuple[CallCounter, CallCounter]:
    """Calls made by the training steps plus collect(), and by the final statistics."""
    model, generator = relu_mlp(depth), torch.Generator().manual_seed(0)
    with GradientProbe(model) as probe:
        with CallCounter() as per_batch:
            for _ in range(batches):
                step(model, generator)
                probe.collect()
        with CallCounter() as final:
            probe.layer_stats()
            probe.activation_stats()
    return per_batch, final


def count_bare(depth: int, batches: int) -> CallCounter:
    model, generator = relu_mlp(depth), torch.Generator().manual_seed(0)
    with CallCounter() as counter:
        for _ in range(batches):
            step(model, generator)
    return counter


@pytest.mark.parametrize("depth", [3, 30])
def test_one_host_transfer_per_batch_whatever_the_depth(depth: int) -> None:
    per_batch, final = count_probe(depth, batches=3)
    assert per_batch.transfers() == 3
    # Weight norms (once per run) and all activations' unit counts: one transfer each.
    assert final.transfers() == 2


def test_bare_step_counts_no_transfer() -> None:
    # The counter sees what it should: a bare step moves nothing to the host.
    assert count_bare(3, batches=1).transfers() == 0


def test_probe_work_grows_linearly_with_depth() -> None:
    """Extra torch calls per layer are the same at 10 and 100 layers, and few."""
    extra = {}
    for depth in (10, 100):
        per_batch, _ = count_probe(depth, batches=1)
        extra[depth] = per_batch.kernels() - count_bare(depth, batches=1).kernels()
    per_layer = (extra[100] - extra[10]) / 90
    constant = extra[10] - 10 * per_layer
    # Per block (Linear, ReLU, LayerNorm, Tanh): 2 register_hook, 2 detach, amax and amin of
    # the ReLU's input (alive, and fed a constant), abs/gt_/sum and one vector_norm for the
    # tanh (tails, mean derivative), 4 count_nonzero (one per parameter).
    assert per_layer == 14
    assert constant <= 10  # foreach norm, stack, cat, one tolist: not per layer


def test_one_output_gradient_reduction_per_layer_call() -> None:
    model, generator = relu_mlp(5), torch.Generator().manual_seed(0)
    with GradientProbe(model) as probe:
        step(model, generator)
        assert len(probe._act_sq) == 10  # 5 Linear + 5 LayerNorm outputs, one norm each
        probe.collect()
        assert not probe._act_sq


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_no_host_synchronisation_in_hooks_on_cuda() -> None:
    model, generator = relu_mlp(4).cuda(), torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(4, 8, device="cuda", generator=generator)
    with GradientProbe(model) as probe:
        for _ in range(2):
            model.zero_grad(set_to_none=True)
            torch.cuda.set_sync_debug_mode("error")  # any synchronising call in a hook raises
            try:
                model(x).square().mean().backward()
            finally:
                torch.cuda.set_sync_debug_mode("default")
            probe.collect()  # the one transfer per batch, allowed to synchronise
        layers = probe.layer_stats()
    assert all(layer.grad_norm > 0 for layer in layers)
