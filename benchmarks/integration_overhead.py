"""What the Lightning and Hugging Face Trainer callbacks cost: per step, per fit, and to attach.

    python benchmarks/integration_overhead.py                          # reference models, 1 thread
    python benchmarks/integration_overhead.py --models small-mlp,small-cnn,small-transformer \
        --steps 400 --rounds 1                                         # 400-step fits of small models
    python benchmarks/integration_overhead.py --startup                # attaching, in fresh processes
    python benchmarks/integration_overhead.py --models mlp --steps 8 --rounds 1   # a quick check

For each model (the reference models of benchmarks/overhead.py: the ResNet-18-style CNN, the
6-layer pre-LN transformer, the 100-layer tanh MLP; or the small ones defined here) and each
framework, three trainers fit the same model on the same fixed batch: bare, with
GradcheckCallback(every=1) and with GradcheckCallback(every=100). A timing callback records
the wall time of every training step (Lightning: on_train_batch_start .. on_train_batch_end;
Trainer: on_step_begin .. on_step_end), so the framework's own per-step work is in both
numerator and denominator. Each round fits every variant for --steps steps in rotating order;
after the first --warmup steps of each fit, the step times of all rounds are pooled and their
medians compared. "whole fit" is the median over rounds of the variant's fit() wall time (with
making the callback) over bare's in the same round: start-up and measured steps included.

every=1 measures (and diagnoses) every step. With every=100 the measured steps are 0, 100, ...;
the per-step ratio printed is the period's average, (99 * median(every=100) + median(every=1))
/ (100 * median(bare)), as in benchmarks/monitor_overhead.py.

--startup runs one fresh process per framework (torch and the framework imported, gradcheck
not, as in a user's script): two bare fits of the small MLP, then one with
GradcheckCallback(every=100). "attach" is what the callback adds before the first step starts
(importing and making it, its fit-start hook making the monitor and attaching the hooks);
"first measured step" is step 0's time over a bare step (it imports the judging half: the rules
and the report, at the first measurement).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_models

MODELS = {
    "cnn": ("ResNet-18-style CNN, 8x3x64x64", reference_models.build_cnn),
    "transformer": ("6-layer pre-LN transformer, 8x128", reference_models.build_transformer),
    "mlp": ("100-layer tanh MLP, width 256, batch 64", reference_models.build_mlp),
}
VARIANTS = ("bare", "every=1", "every=100")


def small_mlp() -> reference_models.Built:
    """34k parameters, batch 64: a step of a few milliseconds, where a fixed cost shows."""
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 10))

    def batch(g: torch.Generator) -> reference_models.Batch:
        return torch.randn(64, 64, generator=g), torch.randint(0, 10, (64,), generator=g)

    return model, batch, nn.functional.cross_entropy


def small_cnn() -> reference_models.Built:
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(32, 10),
    )  # fmt: skip

    def batch(g: torch.Generator) -> reference_models.Batch:
        return torch.randn(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g)

    return model, batch, nn.functional.cross_entropy


def small_transformer() -> reference_models.Built:
    model = reference_models.Transformer(vocab=256, d=64, heads=4, layers=2, context=32, tied=False)
    return model, reference_models._lm_batch(256, 8, 32), reference_models._lm_loss


SMALL = {
    "small-mlp": ("MLP 64-256-64-10, batch 64", small_mlp),
    "small-cnn": ("2-conv CNN, 16x3x32x32", small_cnn),
    "small-transformer": ("2-layer transformer d64, 8x32", small_transformer),
}


@dataclass(frozen=True)
class Fit:
    times: list[float]
    """Each training step's wall time."""
    setup: float
    """Making the callbacks, plus fit start to the first step's start."""
    seconds: float
    """Making the callbacks plus the whole fit()."""


class WithLoss(nn.Module):
    """The model and its loss in one forward (the Trainer's convention: forward(**batch) -> {"loss"})."""

    def __init__(self, model: nn.Module, loss_fn: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": self.loss_fn(self.model(x), target)}


class OneBatch(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """The same batch, sample by sample, repeated for `steps` steps."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, steps: int) -> None:
        self.x, self.y, self.steps = x, y, steps

    def __len__(self) -> int:
        return len(self.x) * self.steps

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i % len(self.x)], "target": self.y[i % len(self.y)]}


# -- Lightning ---------------------------------------------------------------------------------
def fit_lightning(model: WithLoss, data: OneBatch, every: int | None) -> Fit:
    import lightning.pytorch as pl

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
            return self.inner(**batch)["loss"]

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=1e-4)

    class Timer(pl.Callback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.setup = math.nan

        def on_fit_start(self, *args: Any) -> None:
            self.fit_started = time.perf_counter()

        def on_train_batch_start(self, *args: Any) -> None:
            self.started = time.perf_counter()
            if not self.times:
                self.setup = self.started - self.fit_started  # the callbacks' set-up is in here

        def on_train_batch_end(self, *args: Any) -> None:
            self.times.append(time.perf_counter() - self.started)

    timer = Timer()
    started = time.perf_counter()
    callbacks: list[Any] = [timer]
    if every:
        from gradcheck_cli.monitor.integrations.lightning import GradcheckCallback

        callbacks.append(GradcheckCallback(every=every, log_statistics=False))
    made = time.perf_counter() - started
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=data.steps, logger=False, callbacks=callbacks, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    batch = len(data.x)
    started = time.perf_counter()
    trainer.fit(Module(), torch.utils.data.DataLoader(data, batch_size=batch))
    return Fit(timer.times, made + timer.setup, time.perf_counter() - started + made)


# -- Hugging Face Trainer ----------------------------------------------------------------------
def fit_trainer(model: WithLoss, data: OneBatch, every: int | None, out: str) -> Fit:
    import transformers

    class Timer(transformers.TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.setup = math.nan

        def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
            self.fit_started = time.perf_counter()

        def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
            self.started = time.perf_counter()
            if not self.times:
                self.setup = self.started - self.fit_started  # the callbacks' set-up is in here

        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            self.times.append(time.perf_counter() - self.started)

    timer = Timer()
    started = time.perf_counter()
    callbacks: list[Any] = [timer]
    if every:
        from gradcheck_cli.monitor.integrations.transformers import GradcheckCallback

        callbacks.append(GradcheckCallback(every=every, report_to_trainer_loggers=False))
    made = time.perf_counter() - started
    args = transformers.TrainingArguments(
        output_dir=out, max_steps=data.steps, per_device_train_batch_size=len(data.x), learning_rate=1e-4,
        optim="sgd", save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True, logging_strategy="no",
    )  # fmt: skip
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=callbacks)
    started = time.perf_counter()
    trainer.train()
    return Fit(timer.times, made + timer.setup, time.perf_counter() - started + made)


def fit(framework: str, model: WithLoss, data: OneBatch, every: int | None, tag: str) -> Fit:
    if framework == "lightning":
        return fit_lightning(model, data, every)
    with tempfile.TemporaryDirectory(prefix=f"gradcheck-bench-{tag}-") as out:
        return fit_trainer(model, data, every, out)


def measure(
    framework: str, build: Callable[[], Any], steps: int, rounds: int, warmup: int
) -> dict[str, float]:
    """Per variant: the median step time, and the median whole-fit time over bare's."""
    torch.manual_seed(0)
    base, make_batch, loss_fn = build()
    x, y = make_batch(torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    fits: dict[str, list[float]] = {v: [] for v in VARIANTS}
    every = {"bare": None, "every=1": 1, "every=100": 100}
    fit(framework, WithLoss(copy.deepcopy(base), loss_fn), OneBatch(x, y, 3), None, "warm")
    for r in range(rounds):
        for variant in VARIANTS[r % 3 :] + VARIANTS[: r % 3]:
            model, data = WithLoss(copy.deepcopy(base), loss_fn), OneBatch(x, y, steps)
            done = fit(framework, model, data, every[variant], variant)
            times[variant] += done.times[warmup:]
            fits[variant].append(done.seconds)
    out = {v: statistics.median(t) for v, t in times.items()}
    for v in VARIANTS:
        out[f"fit {v}"] = statistics.median(a / b for a, b in zip(fits[v], fits["bare"], strict=True))
    return out


def startup(framework: str, key: str) -> dict[str, float]:
    """In this fresh process (torch and the framework imported, gradcheck not): what attaching
    GradcheckCallback(every=100) adds before the first step (importing the callback, making
    it, its fit-start hook making the monitor), and what the first measured step (step 0)
    costs over a bare step (it imports the judging half)."""
    torch.manual_seed(0)
    base, make_batch, loss_fn = SMALL[key][1]()
    x, y = make_batch(torch.Generator().manual_seed(0))
    runs = [
        fit(framework, WithLoss(copy.deepcopy(base), loss_fn), OneBatch(x, y, 12), every, "start")
        for every in (None, None, 100)
    ]
    bare, hooked = runs[1], runs[2]
    return {
        "attach": hooked.setup - bare.setup,
        "first": hooked.times[0] - statistics.median(bare.times[2:]),
        "bare step": statistics.median(bare.times[2:]),
    }


def load() -> str:
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description="Lightning / HF Trainer callback overhead vs the bare step")
    parser.add_argument("--models", default="cnn,transformer,mlp", help=f"of {', '.join([*MODELS, *SMALL])}")
    parser.add_argument("--frameworks", default="lightning,transformers")
    parser.add_argument("--steps", type=int, default=25, help="steps per fit (the first --warmup not timed)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--startup", action="store_true", help="only the start-up, in fresh processes")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(startup(*args.child.split(":"))))
        return
    if args.startup:
        print_startup(args)
        return
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.rounds} rounds x {args.steps} steps")
    print(
        f"{'framework':13s} {'model':42s} {'bare step':>10s} {'every=1':>9s} {'every=100':>10s}  whole fit: 1 / 100"
    )
    for framework in args.frameworks.split(","):
        for key in args.models.split(","):
            name, build = {**MODELS, **SMALL}[key]
            before = load()
            med = measure(framework, build, args.steps, args.rounds, args.warmup)
            bare = med["bare"]
            ratio_1 = med["every=1"] / bare
            ratio_100 = (99 * med["every=100"] + med["every=1"]) / (100 * bare)
            whole = f"{med['fit every=1']:.3f}x / {med['fit every=100']:.3f}x"
            print(
                f"{framework:13s} {name:42s} {bare * 1e3:8.1f}ms {ratio_1:8.2f}x {ratio_100:9.3f}x  {whole}"
                f"  ({before} -> {load()})",
                flush=True,
            )


def print_startup(args: argparse.Namespace) -> None:
    """Each framework twice: as this environment runs Python, and with a bytecode cache (a
    temporary PYTHONPYCACHEPREFIX, filled by one run first), as an installed wheel has."""
    print("start-up of GradcheckCallback(every=100), one fresh process per row, small MLP")
    with tempfile.TemporaryDirectory(prefix="gradcheck-pyc-") as pyc:
        cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached["PYTHONPYCACHEPREFIX"] = pyc
        plain = (
            "not written (PYTHONDONTWRITEBYTECODE)" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "as set"
        )
        for framework in args.frameworks.split(","):
            command = [
                sys.executable,
                __file__,
                "--child",
                f"{framework}:small-mlp",
                "--threads",
                str(args.threads),
            ]
            subprocess.run(command, capture_output=True, env=cached, check=True)  # fills the cache
            for label, env in ((f"bytecode {plain}", None), ("bytecode cached", cached)):
                before = load()
                done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
                r = json.loads(done.stdout.strip().splitlines()[-1])
                print(
                    f"{framework:13s} {label:40s} attach {r['attach'] * 1e3:6.1f} ms, first measured step "
                    f"+{r['first'] * 1e3:6.1f} ms (bare step {r['bare step'] * 1e3:.1f} ms)  ({before})",
                    flush=True,
                )


if __name__ == "__main__":
    main()
