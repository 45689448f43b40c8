"""The GradientMonitor's cost per training step, against the bare step and the two naive floors.

    python benchmarks/monitor_overhead.py                    # 3 models, 1 thread, 30 rounds
    python benchmarks/monitor_overhead.py --models mlp --rounds 10 --prefill 0   # a quick look
    python benchmarks/monitor_overhead.py --memory           # also peak RSS, one process per variant

Per reference model (benchmarks/reference_models.py: the 100-layer tanh MLP width 256 batch 64,
the ResNet-18-style CNN 8x3x64x64, the 6-layer pre-LN transformer 8x128), each variant runs on
its own copy of the model, in one process, at one torch thread:

  bare         zero_grad + forward + loss + backward
  param floor  bare + the naive parameter statistics: foreach norms and a non-zero count per
               gradient, one host transfer (measure.grads.ParameterGrads, as benchmarks/overhead.py)
  hook floor   bare + the naive hook statistics: a forward hook on every parameter-owning module
               puts a tensor hook on its output that takes the output gradient's norm; one
               stack and one host transfer after backward
  every=1      bare + GradientMonitor(every=1).step(loss): the full per-step diagnosis
  every=100    bare + GradientMonitor(every=100).step(loss), timed on its unmeasured steps

Each round runs every variant once, in rotating order; a variant's figure is the median over
rounds of its time over the bare step's time in the same round (a slow spell on a shared
machine slows both sides of a ratio). every=100's figure is the period average,
(99 * median(every=100 ratio) + median(every=1 ratio)) / 100. Before timing, the every=1
monitor is run `--prefill` steps so its trend rules judge a full window (100 steps), as on a
long run, not the near-empty history of its first steps. The load average is printed with
every row: on a shared machine, compare ratios from one run only.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_models
from overhead import read_peak, reset_peak

from gradcheck_cli import GradientMonitor
from gradcheck_cli.measure.grads import ParameterGrads, to_host

MODELS = {
    "mlp": ("100-layer tanh MLP, width 256, batch 64", reference_models.build_mlp),
    "cnn": ("ResNet-18-style CNN, 8x3x64x64", reference_models.build_cnn),
    "transformer": ("6-layer pre-LN transformer, 8x128", reference_models.build_transformer),
}
VARIANTS = ("bare", "param floor", "hook floor", "every=1", "every=100")
Step = Callable[[], None]


def load() -> str:
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


class HookFloor:
    """The naive output-gradient statistics: one norm per parameter-owning module's output."""

    def __init__(self, model: nn.Module) -> None:
        self.norms: list[torch.Tensor] = []
        for module in model.modules():
            if any(True for _ in module.parameters(recurse=False)):
                module.register_forward_hook(self._forward)

    def _forward(self, module: nn.Module, args: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(self._backward)

    def _backward(self, grad: torch.Tensor) -> None:
        self.norms.append(torch.linalg.vector_norm(grad))

    def collect(self) -> list[float]:
        host = to_host(self.norms)
        self.norms.clear()
        return host


def variant_step(variant: str, model: nn.Module, batch: tuple[Any, Any], loss_fn: Callable[..., Any]) -> Step:
    inputs, target = batch
    groups = [g for g in (list(m.parameters(recurse=False)) for m in model.modules()) if g]
    floor = HookFloor(model) if variant == "hook floor" else None
    every = {"every=1": 1, "every=100": 100}.get(variant)
    monitor = GradientMonitor(model, every=every, callback=None) if every else None

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss = loss_fn(model(inputs), target)
        loss.backward()
        if variant == "param floor":
            ParameterGrads.gather(groups).measure(len(groups))
        elif floor is not None:
            floor.collect()
        elif monitor is not None:
            monitor.step(loss)

    return step


def steps_for(key: str) -> dict[str, Step]:
    torch.manual_seed(0)
    model, make_batch, loss_fn = MODELS[key][1]()
    batch = make_batch(torch.Generator().manual_seed(0))
    model.train()
    return {v: variant_step(v, copy.deepcopy(model), batch, loss_fn) for v in VARIANTS}


def measure(key: str, rounds: int, warmup: int, prefill: int) -> dict[str, float]:
    steps = steps_for(key)
    for _ in range(prefill):
        steps["every=1"]()
    for _ in range(warmup):  # covers every=100's measured step 0: its timed steps are unmeasured
        for step in steps.values():
            step()
    samples: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(rounds):
        order = VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]
        for variant in order:
            started = time.perf_counter()
            steps[variant]()
            samples[variant].append(time.perf_counter() - started)
    bare = samples["bare"]
    ratio = {v: statistics.median(t / b for t, b in zip(samples[v], bare, strict=True)) for v in VARIANTS}
    ratio["every=100"] = (99 * ratio["every=100"] + ratio["every=1"]) / 100
    ratio["bare ms"] = statistics.median(bare) * 1e3
    return ratio


def child(spec: str, steps: int) -> None:
    """Peak RSS of one variant over `steps` steps, in this fresh process (see overhead.py)."""
    key, variant = spec.split(":")
    torch.manual_seed(0)
    model, make_batch, loss_fn = MODELS[key][1]()
    step = variant_step(variant, model, make_batch(torch.Generator().manual_seed(0)), loss_fn)
    reset_peak("cpu")
    for _ in range(steps):
        step()
    print(json.dumps({"peak": read_peak("cpu")}))


def peak(key: str, variant: str, steps: int, threads: int) -> float:
    command = [sys.executable, __file__, "--child", f"{key}:{variant}", "--threads", str(threads)]
    command += ["--memory-steps", str(steps)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["peak"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="mlp,cnn,transformer")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--prefill", type=int, default=100, help="every=1 steps run before timing")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--memory", action="store_true", help="peak RSS per variant (fresh processes)")
    parser.add_argument("--memory-steps", type=int, default=12)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        child(args.child, args.memory_steps)
        return
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.rounds} interleaved rounds, medians")
    print(f"{'model':42s} {'bare':>8s} " + " ".join(f"{v:>11s}" for v in VARIANTS[1:]) + "  floors+")
    for key in args.models.split(","):
        before = load()
        r = measure(key, args.rounds, args.warmup, args.prefill)
        floors = r["param floor"] + r["hook floor"] - 1
        cells = " ".join(f"{r[v]:10.3f}x" for v in VARIANTS[1:])
        print(f"{MODELS[key][0]:42s} {r['bare ms']:6.1f}ms {cells} {floors:6.3f}x  ({before} -> {load()})")
        if args.memory:
            base = peak(key, "bare", args.memory_steps, args.threads)
            mem = " ".join(
                f"{peak(key, v, args.memory_steps, args.threads) / base:10.3f}x" for v in VARIANTS[1:]
            )
            print(
                f"{'  peak RSS over the bare step':42s} {base / 2**20:6.0f}MB {mem}  ({load()})", flush=True
            )


if __name__ == "__main__":
    main()
