"""GradcheckCallback in the real Hugging Face Trainer (CPU), driving models of our own (never a
transformers architecture): statistics reach TensorBoard, a run that goes non-finite is caught
at the right step and layer despite the Trainer's gradient clipping, training is unchanged."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from gradcheck_cli.monitor.integrations.transformers import GradcheckCallback, GradcheckFindingError  # noqa: E402
from tests.growing import GoesNonfinite  # noqa: E402

STEPS = 24


class ReturnsLoss(nn.Module):
    """Our own model in the Trainer's calling convention: forward(**batch) -> {"loss", "logits"}."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.inner(x)
        return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}


def small_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 4))


class Rows(torch.utils.data.Dataset):  # type: ignore[type-arg]
    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(8 * STEPS, 8, generator=g)
        self.y = torch.randint(0, 4, (8 * STEPS,), generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "labels": self.y[i]}


def train(inner: nn.Module, out: Path, callback: GradcheckCallback | None, **extra: Any) -> Any:
    args = transformers.TrainingArguments(
        output_dir=str(out),
        max_steps=STEPS,
        per_device_train_batch_size=8,
        learning_rate=0.05,
        optim="sgd",
        lr_scheduler_type="constant",
        save_strategy="no",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        report_to=extra.pop("report_to", []),
        **extra,
    )
    trainer = transformers.Trainer(
        model=ReturnsLoss(inner),
        args=args,
        train_dataset=Rows(),
        eval_dataset=Rows(),
        callbacks=[callback] if callback else [],
    )
    trainer.train()
    return trainer


def test_statistics_arrive_in_tensorboard(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    callback = GradcheckCallback(every=8)
    train(small_mlp(), tmp_path, callback, report_to=["tensorboard"], eval_strategy="steps", eval_steps=8)
    events = EventAccumulator(str(tmp_path / "runs" / "gradcheck"), size_guidance={"scalars": 0})
    events.Reload()
    history = {rec.step: rec for rec in callback.monitor.history}
    assert sorted(history) == [0, 8, 16]
    for name in ("inner.0", "inner.2", "inner.4"):
        scalars = events.Scalars(f"gradcheck/grad_norm/{name}")
        assert [e.step for e in scalars] == [0, 8, 16]
        for e in scalars:
            layer = next(r.stats for r in history[e.step].report.layers if r.stats.name == name)
            assert e.value == pytest.approx(layer.grad_norm, rel=1e-5)
    # evaluation forwards (after steps 8 and 16) ran with the hooks detached
    assert all(rec.report.layers[0].stats.calls == 1 for rec in callback.monitor.history)


def test_training_is_bit_identical_with_the_callback(tmp_path: Path) -> None:
    bare, watched = small_mlp(), small_mlp()
    train(bare, tmp_path / "bare", None)
    train(watched, tmp_path / "watched", GradcheckCallback(every=1))
    for a, b in zip(bare.state_dict().values(), watched.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_nonfinite_is_caught_before_clipping_at_its_step_and_first_layer(tmp_path: Path) -> None:
    callback = GradcheckCallback(every=1)
    train(GoesNonfinite(at=12), tmp_path, callback)  # max_grad_norm=1.0, the Trainer's default
    first = next(f for f in callback.monitor.last.report.findings if f.id == "nonfinite-first-layer").evidence
    assert first["first_step"] == 12 and first["first_layer"] == "inner.enc"
    assert first["loss_nonfinite_step"] == 13 and first["steps_before_loss"] == 1
    assert math.isfinite(first["loss_at_first_step"])


def test_fail_on_error_stops_training_or_raises(tmp_path: Path) -> None:
    trainer = train(GoesNonfinite(at=12), tmp_path / "stop", GradcheckCallback(every=1, fail_on="error"))
    assert trainer.state.global_step == 13
    with pytest.raises(GradcheckFindingError, match="step 12"):
        train(
            GoesNonfinite(at=12),
            tmp_path / "raise",
            GradcheckCallback(every=1, fail_on="error", action="raise"),
        )


class ReturnsLogits(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.inner(x)}


def test_a_model_without_a_loss_is_measured_at_pre_optimizer_step(tmp_path: Path) -> None:
    callback = GradcheckCallback(every=8)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=STEPS, per_device_train_batch_size=8, learning_rate=0.05,
        optim="sgd", save_strategy="no", use_cpu=True, seed=0, disable_tqdm=True, report_to=[],
        max_grad_norm=0.0, remove_unused_columns=False,
    )  # fmt: skip
    model = ReturnsLogits(small_mlp())
    trainer = transformers.Trainer(
        model=model,
        args=args,
        train_dataset=Rows(),
        callbacks=[callback],
        compute_loss_func=lambda outputs, labels, num_items_in_batch=None: nn.functional.cross_entropy(
            outputs["logits"], labels
        ),
    )
    trainer.train()
    assert [s.step for s in callback.monitor.trend] == [0, 8, 16]
    assert all(s.loss is None for s in callback.monitor.trend)  # the Trainer's loss is not the model's
    assert all(
        math.isfinite(p.grad_norm) and p.grad_norm > 0 for s in callback.monitor.trend for p in s.layers
    )
