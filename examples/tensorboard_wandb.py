"""GradientMonitor in a plain loop, writing to TensorBoard and (offline) Weights & Biases. CPU, seconds.

    pip install 'gradcheck-cli[tensorboard,wandb]'
    python examples/tensorboard_wandb.py   # example-runs/: runs/gradcheck_example, wandb/ (offline), run.jsonl
    tensorboard --logdir example-runs/runs # SCALARS: gradcheck/grad_norm/<layer>, ...; TEXT: findings
    gradcheck report example-runs/run.jsonl --format html --output example-runs/run.html

The first layer's gradient is made to grow 2x every 50 steps (a custom autograd function
scales it on the way back; the forward is untouched), the kind of slow drift that looks fine
at any single step. The gradient-trend rule reports it with its slope: log10(2) * 20 = 6.02
orders of magnitude per 1000 steps. Pass --no-wandb to skip W&B.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradcheck_cli import GradientMonitor, TensorBoardSink

OUT = "example-runs"
"""Where this example writes (covered by .gitignore); run it from the repository root."""


class ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(8, 32)
        self.mid = nn.Linear(32, 32)
        self.head = nn.Linear(32, 4)
        self.step = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = ScaleGrad.apply(self.enc(x), 2.0 ** (self.step / 50))
        return self.head(torch.relu(self.mid(torch.tanh(h))))


def sinks(use_wandb: bool) -> list[Any]:
    out: list[Any] = [TensorBoardSink(log_dir=f"{OUT}/runs/gradcheck_example")]
    if use_wandb:
        import wandb

        from gradcheck_cli import WandbSink

        os.environ.setdefault("WANDB_MODE", "offline")
        out.append(WandbSink(wandb.init(project="gradcheck-example", dir=OUT)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--no-wandb", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    Path(OUT).mkdir(exist_ok=True)  # example-runs/ is in .gitignore
    with GradientMonitor(
        model, every=10, jsonl=f"{OUT}/run.jsonl", sinks=sinks(not args.no_wandb)
    ) as monitor:
        for step in range(args.steps):
            model.step = step
            x, y = torch.randn(32, 8, generator=g), torch.randint(0, 4, (32,), generator=g)
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            monitor.step(loss)
            optimizer.step()
    if not args.no_wandb:
        import wandb

        wandb.finish()
    trend = [f for f in monitor.last.report.findings if f.id == "gradient-trend"] if monitor.last else []
    print(trend[0].message if trend else "no trend found")
    print(f"wrote {OUT}/run.jsonl, {OUT}/runs/" + ("" if args.no_wandb else f" and {OUT}/wandb/"))


if __name__ == "__main__":
    main()
