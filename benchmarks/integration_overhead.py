"""What the Lightning and Hugging Face Trainer callbacks cost per training step.

    python benchmarks/integration_overhead.py                          # all, 1 thread
    python benchmarks/integration_overhead.py --models mlp --steps 8 --rounds 1   # a quick check

For each reference model of benchmarks/overhead.py (the ResNet-18-style CNN, the 6-layer
pre-LN transformer, the 100-layer tanh MLP; benchmarks/reference_models.py) and each framework,
three trainers fit the same model on the same fixed batch: bare, with GradcheckCallback(every=1)
and with GradcheckCallback(every=100). A timing callback records the wall time of every
training step (Lightning: on_train_batch_start .. on_train_batch_end; Trainer: on_step_begin ..
on_step_end), so the framework's own per-step work is in both numerator and denominator. Each
round fits every variant for --steps steps in rotating order; after the first --warmup steps of
each fit, the step times of all rounds are pooled and their medians compared.

every=1 measures (and diagnoses) every step. With every=100 the measured step is step 0 of each
fit, inside the warm-up, so the timed steps are its bare ones; the ratio printed is the period's
average, (99 * median(every=100) + median(every=1)) / (100 * median(bare)), as in
benchmarks/monitor_overhead.py.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
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
def fit_lightning(model: WithLoss, data: OneBatch, every: int | None) -> list[float]:
    import lightning.pytorch as pl

    from gradcheck_cli.monitor.integrations.lightning import GradcheckCallback

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

        def on_train_batch_start(self, *args: Any) -> None:
            self.started = time.perf_counter()

        def on_train_batch_end(self, *args: Any) -> None:
            self.times.append(time.perf_counter() - self.started)

    timer = Timer()
    callbacks: list[Any] = [timer] + ([GradcheckCallback(every=every, log_statistics=False)] if every else [])
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=data.steps, logger=False, callbacks=callbacks, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    batch = len(data.x)
    trainer.fit(Module(), torch.utils.data.DataLoader(data, batch_size=batch))
    return timer.times


# -- Hugging Face Trainer ----------------------------------------------------------------------
def fit_trainer(model: WithLoss, data: OneBatch, every: int | None, out: str) -> list[float]:
    import transformers

    from gradcheck_cli.monitor.integrations.transformers import GradcheckCallback

    class Timer(transformers.TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
            self.started = time.perf_counter()

        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            self.times.append(time.perf_counter() - self.started)

    timer = Timer()
    callbacks: list[Any] = [timer] + (
        [GradcheckCallback(every=every, report_to_trainer_loggers=False)] if every else []
    )
    args = transformers.TrainingArguments(
        output_dir=out, max_steps=data.steps, per_device_train_batch_size=len(data.x), learning_rate=1e-4,
        optim="sgd", save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True, logging_strategy="no",
    )  # fmt: skip
    transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=callbacks).train()
    return timer.times


def measure(
    framework: str, build: Callable[[], Any], steps: int, rounds: int, warmup: int
) -> dict[str, float]:
    torch.manual_seed(0)
    base, make_batch, loss_fn = build()
    x, y = make_batch(torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    every = {"bare": None, "every=1": 1, "every=100": 100}
    for r in range(rounds):
        for variant in VARIANTS[r % 3 :] + VARIANTS[: r % 3]:
            model, data = WithLoss(copy.deepcopy(base), loss_fn), OneBatch(x, y, steps)
            if framework == "lightning":
                step_times = fit_lightning(model, data, every[variant])
            else:
                step_times = fit_trainer(model, data, every[variant], f"/tmp/gradcheck-bench-{variant}")
            times[variant] += step_times[warmup:]
    return {v: statistics.median(t) for v, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description="Lightning / HF Trainer callback overhead vs the bare step")
    parser.add_argument("--models", default="cnn,transformer,mlp")
    parser.add_argument("--frameworks", default="lightning,transformers")
    parser.add_argument("--steps", type=int, default=25, help="steps per fit (the first --warmup not timed)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.rounds} rounds x {args.steps} steps")
    print(f"{'framework':13s} {'model':42s} {'bare step':>10s} {'every=1':>9s} {'every=100':>10s}")
    for framework in args.frameworks.split(","):
        for key in args.models.split(","):
            name, build = MODELS[key]
            med = measure(framework, build, args.steps, args.rounds, args.warmup)
            bare = med["bare"]
            ratio_1 = med["every=1"] / bare
            ratio_100 = (99 * med["every=100"] + med["every=1"]) / (100 * bare)
            print(
                f"{framework:13s} {name:42s} {bare * 1e3:8.1f}ms {ratio_1:8.2f}x {ratio_100:9.3f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
