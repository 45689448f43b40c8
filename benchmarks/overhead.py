"""What gradcheck costs per training step, against a bare zero_grad + forward + loss + backward.

Plain PyTorch plus gradcheck's own API. For each reference model (benchmarks/reference_models.py)
it times, in one process and interleaved (each round runs every variant once, in rotating
order), the median time per iteration after warm-up, at a fixed thread count:

  bare    zero_grad + forward + loss + backward
  params  bare + gradcheck's parameter statistics (foreach gradient norms, zero counts,
          one host transfer): probe.ParameterGrads
  probe   bare + the full default probe: output-gradient hooks on every layer, functional
          activation calls seen in forward (F.relu, torch.tanh), unit
          statistics for dead/saturated detection, parameter statistics: GradientProbe.collect()
and, for a 200-step GRU, the through-time pass (through_time.measure) against its bare step.

The variants run on separate deep copies of the model, so the probe's hooks stay attached
to its copy only. Peak memory is measured in separate processes (VmHWM, reset after the model is built, on CPU;
torch.cuda.max_memory_allocated on CUDA), one per model and variant.

    python benchmarks/overhead.py                        # all models, CPU, 2 threads
    python benchmarks/overhead.py --models mlp,cnn --iters 30
    python benchmarks/overhead.py --device cuda --no-memory
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_models

from gradcheck_cli.measure import through_time
from gradcheck_cli.measure.functional import FunctionalActivations
from gradcheck_cli.measure.probe import GradientProbe, ParameterGrads

VARIANTS = ("bare", "params", "probe")
DEFAULT_MODELS = "cnn,transformer,mlp,gpt2,gru"
Step = Callable[[], None]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def training_step(
    model: nn.Module,
    batch: tuple,  # type: ignore[type-arg]
    loss_fn: Callable,  # type: ignore[type-arg]
    forward_context: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext,
) -> Step:
    inputs, target = batch

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with forward_context():  # the probe also watches functional activations in forward
            output = model(inputs)
        loss_fn(output, target).backward()

    return step


def variant_steps(name: str, device: str) -> dict[str, Step]:
    """One callable per variant, each on its own copy of the model."""
    model, make_batch, loss_fn = reference_models.BUILDERS[name]()
    model.to(device).train()
    inputs, target = make_batch(torch.Generator().manual_seed(0))
    batch = (inputs.to(device), target.to(device))
    if name == "gru":
        return gru_steps(model, batch, loss_fn)
    steps = {"bare": training_step(model, batch, loss_fn)}
    stats_model = copy.deepcopy(model)
    stats_step = training_step(stats_model, batch, loss_fn)
    groups = [list(m.parameters(recurse=False)) for m in stats_model.modules()]
    groups = [g for g in groups if g]

    def params() -> None:
        stats_step()
        ParameterGrads.gather(groups).measure(len(groups))

    steps["params"] = params
    probe_model = copy.deepcopy(model)
    probe = GradientProbe(probe_model).attach()  # left attached: this copy is only for the probe
    functional = FunctionalActivations(lambda: probe.last_layer)
    probe_step = training_step(probe_model, batch, loss_fn, functional.watch)

    def probed() -> None:
        probe_step()
        probe.collect()

    steps["probe"] = probed
    return steps


def gru_steps(model: nn.Module, batch: tuple, loss_fn: Callable) -> dict[str, Step]:  # type: ignore[type-arg]
    inputs = batch[0]
    tt_model = copy.deepcopy(model)

    def through() -> None:
        through_time.measure(tt_model, lambda: tt_model(inputs), 0, {})

    return {"bare": training_step(model, batch, loss_fn), "through-time": through}


def time_interleaved(steps: dict[str, Step], iters: int, warmup: int, device: str) -> dict[str, float]:
    """Per variant, the median over rounds of its time divided by the bare pass's time in the
    same round ("bare" itself: its median seconds). Each round runs every variant once, in
    rotating order, so a slow spell on a shared machine slows both sides of a ratio."""
    names = list(steps)
    for _ in range(warmup):
        for name in names:
            steps[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(iters):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            sync(device)
            start = time.perf_counter()
            steps[name]()
            sync(device)
            samples[name].append(time.perf_counter() - start)
    bare = samples["bare"]
    out = {
        name: statistics.median(t / b for t, b in zip(values, bare, strict=True))
        for name, values in samples.items()
    }
    out["bare"] = statistics.median(bare)
    return out


def peak_memory(name: str, variant: str, args: argparse.Namespace) -> float:
    """Peak memory (bytes) of one model and variant, in a fresh process."""
    command = [sys.executable, __file__, "--child", f"{name}:{variant}", "--device", args.device]
    command += ["--threads", str(args.threads), "--iters", "3"]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["peak"])


def child(spec: str, args: argparse.Namespace) -> None:
    name, variant = spec.split(":")
    steps = variant_steps_single(name, variant, args.device)
    # The peak counts from here: the model, its batch and the Python/torch baseline are
    # resident, nothing of the step is. (ru_maxrss would not do: a child inherits the
    # parent's high-water mark across fork and exec.)
    reset_peak(args.device)
    for _ in range(args.iters):
        steps()
    sync(args.device)
    print(json.dumps({"peak": read_peak(args.device)}))


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: reset VmHWM to the current RSS


def read_peak(device: str) -> float:
    if device.startswith("cuda"):
        return float(torch.cuda.max_memory_allocated())
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) * 1024.0
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024.0


def variant_steps_single(name: str, variant: str, device: str) -> Step:
    """One variant alone (no deep copies kept), for the memory measurement."""
    model, make_batch, loss_fn = reference_models.BUILDERS[name]()
    model.to(device).train()
    inputs, target = make_batch(torch.Generator().manual_seed(0))
    inputs = inputs.to(device)
    step = training_step(model, (inputs, target.to(device)), loss_fn)
    groups = [g for g in (list(m.parameters(recurse=False)) for m in model.modules()) if g]
    probe = GradientProbe(model).attach() if variant == "probe" else None
    if probe is not None:
        functional = FunctionalActivations(lambda: probe.last_layer)
        step = training_step(model, (inputs, target.to(device)), loss_fn, functional.watch)

    def run() -> None:
        if variant == "through-time":
            through_time.measure(model, lambda: model(inputs), 0, {})
            return
        step()
        if variant == "params":
            ParameterGrads.gather(groups).measure(len(groups))
        if probe is not None:
            probe.collect()

    return run


def machine(args: argparse.Namespace) -> str:
    cores = len(__import__("os").sched_getaffinity(0))
    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else "no GPU used"
    return (
        f"{platform.processor() or platform.machine()}, {cores} cores available, {args.threads} threads, "
        f"{gpu}; torch {torch.__version__}, Python {platform.python_version()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default=DEFAULT_MODELS, help=f"comma list of {DEFAULT_MODELS}")
    parser.add_argument("--iters", type=int, default=30, help="timed rounds per model (>= 20 for the table)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.child:
        child(args.child, args)
        return
    print(f"# {machine(args)}; median of {args.iters} interleaved rounds after {args.warmup} warm-up")
    print(
        f"{'model':<12} {'bare ms':>9} {'params':>8} {'probe':>8} {'through-time':>13} {'peak mem (params/probe)':>24}"
    )
    for name in args.models.split(","):
        medians = time_interleaved(variant_steps(name, args.device), args.iters, args.warmup, args.device)
        print(row(name, medians, args), flush=True)


def row(name: str, medians: dict[str, float], args: argparse.Namespace) -> str:
    bare = medians["bare"]
    ratios = {v: f"{medians[v]:.3f}x" for v in medians if v != "bare"}
    memory = "-"
    if not args.no_memory:
        base = peak_memory(name, "bare", args)
        others = [v for v in medians if v != "bare"]
        memory = " / ".join(f"{peak_memory(name, v, args) / base:.3f}x" for v in others)
        memory += f" (bare {base / 2**20:.0f} MiB)"
    return (
        f"{name:<12} {bare * 1e3:>9.1f} {ratios.get('params', '-'):>8} {ratios.get('probe', '-'):>8} "
        f"{ratios.get('through-time', '-'):>13} {memory:>24}"
    )


if __name__ == "__main__":
    main()
