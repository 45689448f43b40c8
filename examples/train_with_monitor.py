"""A training loop with gradcheck's GradientMonitor attached. Runs on CPU in a few seconds.

    python examples/train_with_monitor.py                          # writes example-runs/gradcheck-monitor.jsonl
    torchrun --nproc_per_node=2 examples/train_with_monitor.py      # DDP; rank 0 reports

The model is a deep sigmoid MLP, a classic case of vanishing gradients: the monitor warns on
stderr at the first measured step, and the JSON-lines file keeps every measured step's
per-layer statistics. At the end, gradcheck_cli.analyze() gives the full report of the
trained model, the same report `gradcheck analyze` prints.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

import gradcheck_cli
from gradcheck_cli import GradientMonitor


def build_model(depth: int, activation: type[nn.Module]) -> nn.Module:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(32 if i == 0 else 64, 64), activation()]
    return nn.Sequential(*layers, nn.Linear(64, 10))


def synthetic_batch(generator: torch.Generator, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """A learnable task: the label is the argmax of a fixed projection of the input."""
    x = torch.randn(size, 32, generator=generator)
    projection = torch.linspace(-1, 1, 32 * 10).reshape(32, 10)
    return x, (x @ projection).argmax(dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--depth", type=int, default=12)
    parser.add_argument("--activation", choices=["sigmoid", "relu"], default="sigmoid")
    parser.add_argument("--jsonl", default="example-runs/gradcheck-monitor.jsonl")
    args = parser.parse_args()

    distributed = "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        dist.init_process_group("gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    torch.manual_seed(0)
    model = build_model(args.depth, nn.Sigmoid if args.activation == "sigmoid" else nn.ReLU)
    trained: nn.Module = model
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        trained = DistributedDataParallel(model)
    optimizer = torch.optim.Adam(trained.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(1)

    Path(args.jsonl).parent.mkdir(parents=True, exist_ok=True)  # example-runs/ is in .gitignore
    with GradientMonitor(trained, every=args.every, jsonl=args.jsonl) as monitor:
        for step in range(args.steps):
            x, y = synthetic_batch(generator)
            share = slice(rank * len(x) // world, (rank + 1) * len(x) // world)
            loss = nn.functional.cross_entropy(trained(x[share]), y[share])
            optimizer.zero_grad()
            loss.backward()
            monitor.step(loss)  # measures on steps 0, every, 2*every, ...
            optimizer.step()
            if rank == 0 and step % args.every == 0:
                print(f"step {step:4d}  loss {loss.item():.3f}")

    if rank == 0:
        print(f"{len(monitor.history)} measured steps written to {args.jsonl}")
    if distributed:
        dist.destroy_process_group()
        return
    report = gradcheck_cli.analyze(model, inputs=synthetic_batch(generator))
    print(report.render("rich", width=100))


if __name__ == "__main__":
    main()
