"""The GradientMonitor's overhead, as a ratio to the bare training step (plain PyTorch, no test framework).

    python benchmarks/monitor_overhead.py [--iterations 30] [--threads 1] [--watch]

Three small reference models (a ResNet-18-style CNN, a 6-layer pre-LN transformer, a 100-layer
tanh MLP) each train in three copies: bare, with GradientMonitor(every=1), and with
GradientMonitor(every=100). One iteration times one SGD step (forward, backward,
monitor.step(), optimizer.step()) of each copy in turn, so that drift in the machine's speed
hits all three alike; after warm-up, the medians of the iterations are compared.

every=1 measures every step, so its median is the cost of a measured step. With every=100,
99 steps in 100 run bare and one is measured; the ratio printed for it is the period's
average, (99 * median(every=100 step) + median(every=1 step)) / (100 * median(bare step)),
built from medians measured here (running 20 full periods of 100 steps would take minutes).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from gradcheck_cli import GradientMonitor

# ---------------------------------------------------------------------------- reference models


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.down = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.down(x))


def resnet18(width: int = 16, classes: int = 10) -> nn.Module:
    """ResNet-18's layout (2-2-2-2 basic blocks, 20 conv/linear layers) at a quarter of its width."""
    widths = [width, 2 * width, 4 * width, 8 * width]
    layers: list[nn.Module] = [nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
    cin = width
    for i, cout in enumerate(widths):
        layers += [BasicBlock(cin, cout, 1 if i == 0 else 2), BasicBlock(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    return nn.Sequential(*layers)


class PreLNBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class Transformer(nn.Module):
    def __init__(
        self, vocab: int = 1000, dim: int = 128, heads: int = 4, depth: int = 6, seq: int = 64
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.zeros(1, seq, dim))
        self.blocks = nn.Sequential(*[PreLNBlock(dim, heads) for _ in range(depth)])
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.ln(self.blocks(self.embed(tokens) + self.pos)))


def tanh_mlp(depth: int = 100, width: int = 64, classes: int = 10) -> nn.Module:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(width, classes))


Case = tuple[str, Callable[[], nn.Module], torch.Tensor, torch.Tensor]


def cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 1000, (8, 64), generator=g)
    return [
        (
            "resnet18-style CNN, 8x3x32x32",
            resnet18,
            torch.randn(8, 3, 32, 32, generator=g),
            torch.randint(0, 10, (8,)),
        ),
        ("6-layer pre-LN transformer, 8x64 tokens", Transformer, tokens, torch.randint(0, 1000, (8, 64))),
        (
            "100-layer tanh MLP, 32x64",
            tanh_mlp,
            torch.randn(32, 64, generator=g),
            torch.randint(0, 10, (32,)),
        ),
    ]


# ---------------------------------------------------------------------------- timing


class Runner:
    """One copy of the model with its optimizer and, optionally, a monitor."""

    def __init__(self, model: nn.Module, every: int | None, watch: bool = False) -> None:
        self.model = model
        self.optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
        loop = {"optimizer": self.optimizer} if watch else {}
        self.monitor = GradientMonitor(model, every=every, callback=None, **loop) if every else None

    def step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        started = time.perf_counter()
        out = self.model(x)
        loss = nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.monitor is not None:
            self.monitor.step()
        self.optimizer.step()
        return time.perf_counter() - started


def measure(
    build: Callable[[], nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    iterations: int,
    warmup: int,
    watch: bool = False,
) -> dict[str, float]:
    torch.manual_seed(0)
    base = build()
    runners = {"bare": Runner(copy.deepcopy(base), None), "every=1": Runner(copy.deepcopy(base), 1, watch)}
    runners["every=100"] = Runner(copy.deepcopy(base), 100, watch)
    # warm-up covers the every=100 monitor's measured step 0, so the timed steps are its bare ones
    times: dict[str, list[float]] = {name: [] for name in runners}
    for i in range(warmup + iterations):
        for name, runner in runners.items():
            elapsed = runner.step(x, y)
            if i >= warmup:
                times[name].append(elapsed)
    for runner in runners.values():
        if runner.monitor is not None:
            runner.monitor.close()
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description="GradientMonitor overhead vs the bare training step")
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--watch",
        action="store_true",
        help="give the monitors the optimizer (the loop record: groups, lrs, zero_grad, weight checksums)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), medians of {args.iterations} interleaved steps"
    )
    print(f"{'model':42s} {'bare step':>10s} {'every=1':>9s} {'every=100':>10s}")
    for name, build, x, y in cases():
        med = measure(build, x, y, args.iterations, args.warmup, args.watch)
        bare = med["bare"]
        ratio_1 = med["every=1"] / bare
        ratio_100 = (99 * med["every=100"] + med["every=1"]) / (100 * bare)
        print(f"{name:42s} {bare * 1e3:8.1f}ms {ratio_1:8.2f}x {ratio_100:9.3f}x")


if __name__ == "__main__":
    main()
