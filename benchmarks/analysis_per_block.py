"""Analysis time per block: what gradcheck adds to the forward/backward passes it runs, per block.

A residual MLP of N blocks (LayerNorm, tanh, Linear, added to the stream; width 64, batch 32) is
analysed in this process with `gradcheck_cli.analyze` (3 batches, the CLI's defaults). The passes
the analysis runs are counted (forward calls of the model, backward calls of autograd), and each is
charged at the time of a bare pass of the same model on the same batch measured in the same run
(a forward with loss and backward; a forward alone). What is left is the analysis: hooks, statistics,
the extra checks' bookkeeping, the rules, the report. It is printed per block for N = 100, 300, 1000
(flat means linear), with the total per block for comparison. One torch thread; medians of --runs.

  python benchmarks/analysis_per_block.py                 # 100, 300, 1000 blocks
  python benchmarks/analysis_per_block.py --profile 300   # also cProfile one analysis at 300 blocks
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_models import ResidualMLP

from gradcheck_cli import analyze


class Counted:
    """Counts the model's forward calls and autograd's backward calls while it is on."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.forwards = self.backwards = 0
        self.model = model
        self.backward = torch.autograd.backward

    def __enter__(self) -> Counted:
        self.handle = self.model.register_forward_hook(lambda *_: self._count("forwards"))

        def counted_backward(*args: object, **kwargs: object) -> None:
            self.backwards += 1
            self.backward(*args, **kwargs)  # type: ignore[arg-type]

        torch.autograd.backward = counted_backward  # type: ignore[assignment]
        return self

    def _count(self, what: str) -> None:
        setattr(self, what, getattr(self, what) + 1)

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()
        torch.autograd.backward = self.backward  # type: ignore[assignment]


def median_time(function: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def one_depth(depth: int, runs: int) -> tuple[float, float, int, int]:
    """(analysis seconds excluding the passes, total seconds, passes with backward, forward-only)."""
    torch.manual_seed(0)
    model = ResidualMLP(depth, 64)
    x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))

    def bare_step() -> None:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    def bare_forward() -> None:
        with torch.no_grad():
            F.cross_entropy(model(x), y)

    def analysis() -> object:
        return analyze(model, "32x64", device="cpu", batches=3)

    analysis()  # warm-up: imports, first-call caches
    totals, steps, forwards = [], [], []
    for _ in range(runs):  # interleaved: the bare passes are timed next to each analysis
        with Counted(model) as counted:
            totals.append(median_time(analysis, 1))
        steps.append(median_time(bare_step, 5))
        forwards.append(median_time(bare_forward, 5))
    total, step, forward = statistics.median(totals), statistics.median(steps), statistics.median(forwards)
    backward_passes = counted.backwards
    forward_only = max(counted.forwards - backward_passes, 0)
    passes = backward_passes * step + forward_only * forward
    return total - passes, total, backward_passes, forward_only


def profile(depth: int) -> None:
    torch.manual_seed(0)
    model = ResidualMLP(depth, 64)
    analyze(model, "32x64", device="cpu", batches=3)
    profiler = cProfile.Profile()
    profiler.enable()
    analyze(model, "32x64", device="cpu", batches=3)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--depths", default="100,300,1000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", type=int, default=0, help="cProfile one analysis at this depth")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"load average {os.getloadavg()[0]:.2f}; one torch thread; medians of {args.runs}")
    per_block = {}
    for depth in (int(d) for d in args.depths.split(",")):
        analysis, total, full, forward_only = one_depth(depth, args.runs)
        per_block[depth] = analysis / depth
        print(
            f"{depth:5d} blocks: analysis {analysis * 1e3 / depth:6.2f} ms/block "
            f"(total {total * 1e3 / depth:6.2f} ms/block; {full} forward+backward and {forward_only} "
            f"forward-only passes charged at the bare pass's time)"
        )
    if len(per_block) > 1:
        spread = max(per_block.values()) / min(per_block.values())
        print(f"analysis per block, largest/smallest: {spread:.2f}x (1.00x is linear)")
    if args.profile:
        profile(args.profile)


if __name__ == "__main__":
    main()
