"""The monitor records the user's loop (optimizer groups, learning rates, zero_grad, GradScaler)
and the loop rules judge it: each verdict checked against plain PyTorch on a small model."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from gradcheck_cli import GradientMonitor
from gradcheck_cli.judge.run_verdict import build_run_report
from gradcheck_cli.records.findings import Finding

LOOP_IDS = {
    "not-in-optimizer",
    "zero-grad-missing",
    "training-stalled",
    "frozen-mid-run",
    "grad-scaler-skips",
    "eval-mode-training",
    "accumulation-undivided",
    "clip-after-step",
}


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 12), nn.Tanh(), nn.Linear(12, 3))


def batches(n: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [
        (torch.randn(16, 6, generator=generator), torch.randint(0, 3, (16,), generator=generator))
        for _ in range(n)
    ]


def run(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    steps: int,
    *,
    every: int = 2,
    zero_grad: bool = True,
    scheduler: Any = None,
    at_step: Callable[[int], None] | None = None,
    jsonl: Path | None = None,
) -> tuple[GradientMonitor, list[Finding]]:
    """A plain loop; returns the monitor and the findings of the last measured step."""
    data = batches()
    monitor = GradientMonitor(
        model, every=every, callback=None, optimizer=optimizer, scheduler=scheduler, jsonl=jsonl
    )
    for step in range(steps):
        if at_step is not None:
            at_step(step)
        x, y = data[step % len(data)]
        if zero_grad:
            optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        monitor.step(loss)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    monitor.close()
    assert monitor.last is not None
    return monitor, list(monitor.last.report.findings)


def loop_ids(findings: list[Finding]) -> set[str]:
    return {f.id for f in findings} & LOOP_IDS


def test_records_groups_and_learning_rates_of_the_loop() -> None:
    model = mlp()
    optimizer = torch.optim.SGD(
        [{"params": model[0].parameters()}, {"params": model[4].parameters(), "lr": 0.5}], lr=0.1
    )
    monitor, _ = run(model, optimizer, steps=6)
    loop = monitor.history[-1].stats.loop
    assert loop is not None and loop.optimizer == "SGD"
    assert loop.lrs == (0.1, 0.5)
    assert {name: layer.group for name, layer in loop.layers.items()} == {"0": 0, "2": None, "4": 1}
    assert loop.optimizer_steps == 4 and loop.calls == 4 and loop.stepped is True


def test_a_layer_left_out_of_the_optimizer_is_named() -> None:
    model = mlp()
    initial = model[2].weight.detach().clone()
    optimizer = torch.optim.Adam([*model[0].parameters(), *model[4].parameters()], lr=1e-2)
    _, findings = run(model, optimizer, steps=10)
    # plain PyTorch: the middle layer has a gradient and never moved; the others moved
    assert model[2].weight.grad is not None and model[2].weight.grad.abs().sum() > 0
    assert torch.equal(model[2].weight, initial)
    found = next(f for f in findings if f.id == "not-in-optimizer")
    assert found.layers == ("2",) and found.evidence["weights_unchanged"] is True
    assert found.evidence["step"] == 0 and found.evidence["optimizer"] == "Adam"
    assert "zero-grad-missing" not in loop_ids(findings)  # its pile-up is the consequence, not a cause


def test_healthy_loop_gets_no_loop_finding() -> None:
    model = mlp()
    _, findings = run(model, torch.optim.Adam(model.parameters(), lr=1e-2), steps=12)
    assert loop_ids(findings) == set()


def test_forgotten_zero_grad_is_reported_and_the_carry_grows() -> None:
    model = mlp()
    _, findings = run(model, torch.optim.SGD(model.parameters(), lr=1e-3), steps=12, zero_grad=False)
    found = next(f for f in findings if f.id == "zero-grad-missing")
    # measured steps 2, 4, ..., 10 follow an optimizer step with .grad left from every step before
    assert found.evidence["step"] == 2 and found.evidence["steps"] == 5
    carries = found.evidence["carries"]
    assert carries[-1] > 3 and carries[-1] > 2 * carries[0]  # ten steps of gradients piled up


def test_zero_grad_carry_equals_the_left_over_over_the_own_gradient() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 3, bias=False))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    monitor = GradientMonitor(model, every=1, callback=None, optimizer=optimizer)
    x, y = batches(1)[0]
    carries = []
    for _ in range(4):
        left = None if model[0].weight.grad is None else model[0].weight.grad.detach().clone()
        nn.functional.cross_entropy(model(x), y).backward()
        monitor.step()
        own = model[0].weight.grad - (0 if left is None else left)
        expected = 0.0 if left is None else float(left.double().norm() / own.double().norm())
        assert monitor.last is not None and monitor.last.stats.loop is not None
        carries.append((monitor.last.stats.loop.layers["0"].grad_carry, expected))
        optimizer.step()
    monitor.close()
    assert carries[0][0] != carries[0][0] or carries[0][0] == 0  # step 0: nothing before it
    for got, expected in carries[1:]:
        assert got == pytest.approx(expected, rel=1e-6)
    assert {f.id for f in monitor.last.report.findings} >= {"zero-grad-missing"}


@pytest.mark.parametrize("measure_each_micro_batch", [True, False])
def test_gradient_accumulation_is_not_a_forgotten_zero_grad(measure_each_micro_batch: bool) -> None:
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    monitor = GradientMonitor(model, every=1, callback=None, optimizer=optimizer)
    data = batches()
    for _ in range(6):
        optimizer.zero_grad()
        for i, (x, y) in enumerate(data):
            (nn.functional.cross_entropy(model(x), y) / len(data)).backward()
            if measure_each_micro_batch or i == len(data) - 1:
                monitor.step()
        optimizer.step()
    monitor.close()
    assert monitor.last is not None
    assert loop_ids(list(monitor.last.report.findings)) == set()


def test_scheduler_stepped_per_batch_stalls_training_and_is_named() -> None:
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.01)
    lrs: list[float] = []
    snapshots: dict[int, list[torch.Tensor]] = {}

    def record(step: int) -> None:
        lrs.append(scheduler.get_last_lr()[0])
        snapshots[step] = [p.detach().clone() for p in model.parameters()]

    _, findings = run(model, optimizer, steps=40, scheduler=scheduler, at_step=record)
    found = next(f for f in findings if f.id == "training-stalled")
    assert found.evidence["scheduler"] == "StepLR"
    # plain PyTorch: the first measured (even) step whose rate is below 1e-3 of the first
    expected = next(s for s in range(0, 40, 2) if lrs[s] < 1e-3 * lrs[0])
    assert found.evidence["lr_collapse_step"] == expected
    # and the weights really stopped: bitwise equal from the reported step on
    start = found.evidence["step"]
    assert all(torch.equal(a, b) for a, b in zip(snapshots[start], snapshots[38], strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(snapshots[0], snapshots[start], strict=True))


def test_scheduler_stepped_per_epoch_does_not_stall() -> None:
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)

    def epoch_end(step: int) -> None:
        if step and step % 10 == 0:
            scheduler.step()

    _, findings = run(model, optimizer, steps=40, at_step=epoch_end)
    assert loop_ids(findings) == set()


def test_requires_grad_turned_off_mid_run_is_reported_at_the_first_measured_step_after() -> None:
    model = mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    kept: list[torch.Tensor] = []

    def freeze(step: int) -> None:
        if step == 7:
            model[0].requires_grad_(False)
            kept.append(model[0].weight.detach().clone())

    _, findings = run(model, optimizer, steps=14, at_step=freeze)
    found = next(f for f in findings if f.id == "frozen-mid-run")
    assert found.layers == ("0",) and found.evidence["step"] == 8 and found.evidence["how"] == "requires_grad"
    assert torch.equal(model[0].weight, kept[0])


def test_a_group_learning_rate_set_to_zero_mid_run_is_reported() -> None:
    model = mlp()
    optimizer = torch.optim.SGD([{"params": m.parameters()} for m in (model[0], model[2], model[4])], lr=0.05)

    def zero_lr(step: int) -> None:
        if step == 5:
            optimizer.param_groups[1]["lr"] = 0.0

    _, findings = run(model, optimizer, steps=14, at_step=zero_lr)
    found = next(f for f in findings if f.id == "frozen-mid-run")
    assert found.layers == ("2",) and found.evidence["how"] == "not-updated"
    # step 4's update (lr 0.05) shows at step 6; step 8 is the first measured step with none
    assert found.evidence["step"] == 8 and found.evidence["lr"] == 0.0
    assert "training-stalled" not in loop_ids(findings)


def test_frozen_from_the_start_is_not_frozen_mid_run() -> None:
    model = mlp()
    model[0].requires_grad_(False)
    _, findings = run(model, torch.optim.Adam(model[2:].parameters(), lr=1e-2), steps=10)
    assert loop_ids(findings) == set()


# -- GradScaler ---------------------------------------------------------------------------------
def scaled_run(
    init_scale: float, steps: int, loss_factor: float = 1.0
) -> tuple[GradientMonitor, list[float]]:
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale, growth_interval=1000)
    monitor = GradientMonitor(model, every=1, callback=None, optimizer=optimizer, scaler=scaler)
    data = batches()
    scales = []
    for step in range(steps):
        x, y = data[step % len(data)]
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y) * loss_factor
        scales.append(scaler.get_scale())
        scaler.scale(loss).backward()
        monitor.step(loss)
        scaler.step(optimizer)
        scaler.update()
    monitor.close()
    return monitor, scales


def test_grad_scaler_early_skips_are_not_nonfinite_events() -> None:
    monitor, scales = scaled_run(init_scale=2.0**127, steps=12, loss_factor=8.0)
    # plain PyTorch: the scaler halves its scale at each step it skips
    skipped = [i for i in range(1, len(scales)) if scales[i] < scales[i - 1]]
    assert len(skipped) >= 2 and skipped[0] == 1  # step 0 was skipped, and more after it
    records = list(monitor.history)
    assert [r.step for r in records if r.stats.loop and r.stats.loop.scaler_skipped] == [
        s - 1 for s in skipped
    ]
    last = records[-1].stats.loop
    assert last is not None and last.skipped_steps == len(skipped)  # iterations 0-10, counted at step 11
    findings = {f.id for f in records[-1].report.findings}
    assert "nonfinite-first-layer" not in findings and "grad-scaler-skips" not in findings


def test_grad_scaler_reads_unscaled_gradients() -> None:
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    monitor = GradientMonitor(model, every=1, callback=None, optimizer=optimizer, scaler=scaler)
    x, y = batches(1)[0]
    scaler.scale(nn.functional.cross_entropy(model(x), y)).backward()
    monitor.step()
    truth = float(torch.cat([p.grad.flatten() for p in model[0].parameters()]).double().norm() / 1024.0)
    monitor.close()
    assert monitor.last is not None
    measured = next(p.grad_norm for p in monitor.last.stats.layers if p.name == "0")
    assert measured == pytest.approx(truth, rel=1e-5)
    assert monitor.last.stats.loop is not None and monitor.last.stats.loop.loss_scale == 1024.0


def test_grad_scaler_that_skips_every_step_collapses_and_is_reported() -> None:
    monitor, scales = scaled_run(init_scale=16.0, steps=8, loss_factor=math.inf)
    assert scales[-1] < 1  # plain PyTorch: 16 halved at each of 7 steps
    assert monitor.last is not None
    found = next(f for f in monitor.last.report.findings if f.id == "grad-scaler-skips")
    assert found.severity.value == "error" and found.evidence["scale_collapsed"] is True
    assert found.evidence["skipped"] == 7


# -- numbers that overflow float32 but are finite -------------------------------------------------
def test_finite_but_huge_gradients_are_not_nonfinite() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 1))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    monitor = GradientMonitor(model, every=1, callback=None)
    loss = (model(torch.full((32, 64), 1e13)) ** 2).mean() * 1e-2
    loss.backward()
    monitor.step(loss)
    monitor.close()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    truth = float(torch.cat([p.grad.flatten().double() for p in model[1].parameters()]).norm())
    assert monitor.last is not None
    point = next(p for p in monitor.last.stats.layers if p.name == "1")
    assert truth > 1e25 and point.nonfinite == 0
    assert point.grad_norm == pytest.approx(truth, rel=1e-6)
    assert not {f.id for f in monitor.last.report.findings} & {"nonfinite-gradients", "nonfinite-first-layer"}


# -- the JSON lines keep the loop, `gradcheck report` judges it -----------------------------------
def test_loop_record_round_trips_through_the_jsonl_and_report(tmp_path: Path) -> None:
    model = mlp()
    optimizer = torch.optim.Adam([*model[0].parameters(), *model[4].parameters()], lr=1e-2)
    monitor, _ = run(model, optimizer, steps=8, jsonl=tmp_path / "run.jsonl")
    report = build_run_report(tmp_path / "run.jsonl")
    kept = [r.stats.loop for r in monitor.history]
    read = [s.loop for s in report.history.steps]
    assert [k.layers if k else None for k in kept] == [r.layers if r else None for r in read]
    assert [k.lrs if k else None for k in kept] == [r.lrs if r else None for r in read]
    assert [k.backwards for k in kept if k] == [r.backwards for r in read if r] == [1] * len(kept)
    assert [k.loss_divisor for k in kept if k] == pytest.approx([r.loss_divisor for r in read if r])
    found = next(f for f in report.trends if f.id == "not-in-optimizer")
    assert found.layers == ("2",) and found.evidence["step"] == 0


def bn_mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 3))


@pytest.mark.parametrize("fixed", [False, True])
def test_batchnorm_left_in_eval_mode_after_validation(fixed: bool) -> None:
    model = bn_mlp()
    frozen: list[torch.Tensor] = []

    def validate(step: int) -> None:
        if step == 4:
            model.eval()  # the validation pass
            with torch.no_grad():
                model(batches(1)[0][0])
            if fixed:
                model.train()
        frozen.append(model[1].running_mean.clone())

    _, findings = run(model, torch.optim.SGD(model.parameters(), lr=0.1), steps=12, at_step=validate)
    after = torch.stack(frozen[5:])
    # plain PyTorch: in eval mode the running mean never moves again while the weights train on
    assert bool((after == after[0]).all()) is not fixed
    found = [f for f in findings if f.id == "eval-mode-training"]
    if fixed:
        assert found == []
        return
    assert found[0].layers == ("1",) and found[0].evidence["step"] == 4
    assert found[0].evidence["last_train_step"] == 2 and found[0].evidence["optimizer_steps"] == 6
    assert "model.train()" in found[0].message


def test_batchnorm_frozen_from_the_start_is_not_reported() -> None:
    model = bn_mlp()
    model[1].eval()  # fine-tuning with frozen BatchNorm statistics, on purpose
    _, findings = run(model, torch.optim.SGD(model.parameters(), lr=0.1), steps=12)
    assert "eval-mode-training" not in {f.id for f in findings}


def test_grad_scaler_settling_from_a_large_scale_with_the_monitor_after_the_step() -> None:
    """The corpus's loop: monitor.step() after scaler.step()/update(), init_scale 2**24. The first
    skips are the scale settling (plain PyTorch: it halves at each), the gradients the monitor
    reads are the ones scaler.step() unscaled in place, and no step gets a finding for it."""
    model = mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**24)
    monitor = GradientMonitor(model, every=1, callback=None, optimizer=optimizer, scaler=scaler)
    data, scales, truths = batches(), [], []
    for step in range(16):
        x, y = data[step % len(data)]
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.float16):
            loss = nn.functional.cross_entropy(model(x), y)
        scales.append(scaler.get_scale())
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        truths.append(float(torch.cat([p.grad.flatten() for p in model[0].parameters()]).double().norm()))
        monitor.step(loss)
    monitor.close()
    scales.append(scaler.get_scale())
    # plain PyTorch: a skipped step halves the scale; the leading skips are the settling
    skipped = [i for i in range(16) if scales[i + 1] < scales[i]]
    settled = next(i for i in range(16) if i not in skipped)
    assert settled >= 2 and skipped[:settled] == list(range(settled))
    records = list(monitor.history)
    last = records[-1].stats.loop
    # called after the step, the monitor sees a skip as no optimizer step since its previous
    # call: iteration 0 has none before it, so its skip is the one not counted
    assert last is not None and last.settling_skips == settled - 1
    assert last.skipped_steps == len(skipped) - 1
    assert [r.step for r in records if r.stats.loop and r.stats.loop.scaler_skipped] == skipped
    ids = {f.id for r in records for f in r.report.findings if f.severity.value != "info"}
    noise = {"grad-scaler-skips", "nonfinite-gradients", "nonfinite-first-layer", "exploding-gradients"}
    assert not ids & (noise | {"zero-gradient", "training-stalled"}), ids
    fine = [i for i in range(16) if i not in skipped]
    measured = [next(p.grad_norm for p in records[i].stats.layers if p.name == "0") for i in fine]
    assert measured == pytest.approx([truths[i] for i in fine], rel=1e-5)


def accumulate(divide: bool, k: int = 4, steps: int = 5) -> GradientMonitor:
    """k micro-batches per SGD step, the loss divided by k or not; the monitor after the step."""
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    monitor = GradientMonitor(model, every=1, callback=None, optimizer=optimizer)
    data = batches(k)
    for _ in range(steps):
        optimizer.zero_grad()
        for x, y in data:
            loss = nn.functional.cross_entropy(model(x), y)
            (loss / k if divide else loss).backward()
        optimizer.step()
        monitor.step(loss)
    monitor.close()
    return monitor


def test_accumulation_without_dividing_the_loss_is_named_with_k() -> None:
    """Plain PyTorch: the summed gradient of 4 undivided micro-batch means is 4x the gradient of
    the mean loss over the 4; the monitor reads K = 4 backward passes and a divisor of 1."""
    model = mlp()
    data = batches(4)
    for x, y in data:
        nn.functional.cross_entropy(model(x), y).backward()
    summed = torch.cat([p.grad.flatten() for p in model.parameters()])
    model.zero_grad()
    x, y = torch.cat([d[0] for d in data]), torch.cat([d[1] for d in data])
    nn.functional.cross_entropy(model(x), y).backward()
    mean = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert torch.allclose(summed, 4 * mean, rtol=1e-4, atol=1e-6)

    broken = accumulate(divide=False)
    assert broken.last is not None and broken.last.stats.loop is not None
    assert broken.last.stats.loop.backwards == 4
    assert broken.last.stats.loop.loss_divisor == pytest.approx(1.0, rel=1e-6)
    found = {f.id: f for f in broken.last.report.findings}
    assert found["accumulation-undivided"].evidence["applied_over_mean"] == pytest.approx(4.0, rel=1e-3)
    assert "zero-grad-missing" not in found

    healthy = accumulate(divide=True)
    assert healthy.last is not None and healthy.last.stats.loop is not None
    assert healthy.last.stats.loop.loss_divisor == pytest.approx(4.0, rel=1e-6)
    assert "accumulation-undivided" not in {f.id for f in healthy.last.report.findings}


def test_no_accumulation_and_a_non_cross_entropy_loss_are_not_judged() -> None:
    _, findings = run(mlp(), torch.optim.SGD(mlp().parameters(), lr=1e-2), 6, every=1)
    assert "accumulation-undivided" not in {f.id for f in findings}
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    monitor = GradientMonitor(model, every=1, callback=None, optimizer=optimizer)
    for _ in range(4):
        optimizer.zero_grad()
        for x, y in batches(4):
            nn.functional.mse_loss(model(x), nn.functional.one_hot(y, 3).float()).backward()
        optimizer.step()
        monitor.step()
    monitor.close()
    assert monitor.last is not None and monitor.last.stats.loop is not None
    assert math.isnan(monitor.last.stats.loop.loss_divisor)
    assert "accumulation-undivided" not in {f.id for f in monitor.last.report.findings}


def clipped(after_step: bool, max_norm: float = 0.1) -> tuple[GradientMonitor, list[float]]:
    """An SGD loop clipping at max_norm before or after optimizer.step(); the unclipped norms."""
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = GradientMonitor(model, every=1, callback=None, optimizer=optimizer)
    raw = []
    for x, y in batches(4):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        raw.append(float(torch.cat([p.grad.flatten() for p in model.parameters()]).double().norm()))
        if not after_step:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        optimizer.step()
        if after_step:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        monitor.step(loss)
    monitor.close()
    return monitor, raw


def test_clipping_after_the_step_is_reported_with_the_norm_applied() -> None:
    monitor, raw = clipped(after_step=True)
    assert min(raw) > 0.1  # plain PyTorch: the clip binds at every step
    assert monitor.last is not None
    found = {f.id: f for f in monitor.last.report.findings}
    assert found["clip-after-step"].evidence["applied_norm"] == pytest.approx(raw[-1], rel=1e-3)
    assert found["clip-after-step"].evidence["norm_after"] == pytest.approx(0.1, rel=1e-3)

    monitor, _ = clipped(after_step=False)
    assert monitor.last is not None and monitor.last.stats.loop is not None
    assert monitor.last.stats.loop.grad_norm_at_step == pytest.approx(0.1, rel=1e-3)
    assert "clip-after-step" not in {f.id for f in monitor.last.report.findings}
