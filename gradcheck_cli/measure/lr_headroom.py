"""--lr-headroom: k steps on one fixed batch at the learning rate times 1, 3, 10, 30.

Each run starts from the same state (the weights and buffers as loaded, reloaded before every
run) with the same seed, builds the optimizer as --steps does (the model file's own, a
checkpoint's, or --optimizer/--lr) and sets every param group's rate to the rate it was built
with (a scheduler's `initial_lr`: the peak, not a warm-up's first value) times the multiplier.
The scheduler is not stepped. Per step: the loss, every layer's update/weight ratio, every
attention head's largest logit and entropy (measure/head_attention.py), and the output's
logit RMS and log-partition (mean logsumexp over its last dimension). gradcheck's own loop
runs the steps (training.train: clipping with --clip, a GradScaler under float16); the model
goes back to its initial state afterwards. judge/headroom.py says which multiplier broke.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch

from gradcheck_cli.judge.headroom import judge_runs
from gradcheck_cli.measure import training
from gradcheck_cli.measure.device import seed_everything
from gradcheck_cli.measure.head_attention import HeadWatch
from gradcheck_cli.measure.optimizers import ChosenOptimizer, choose_optimizer, optimizer_name
from gradcheck_cli.measure.outputs import split_output
from gradcheck_cli.measure.passes import Prepared, counted, forward, loss_of
from gradcheck_cli.records.headroom import HeadroomRun, LrHeadroom, Series


def measure_headroom(prepared: Prepared, optimizer_state: Any = None) -> LrHeadroom:
    config, model = prepared.config, prepared.model
    start = copy.deepcopy(model.state_dict())
    runs: list[HeadroomRun] = []
    chosen: ChosenOptimizer | None = None
    base_lr = math.nan
    try:
        for multiplier in sorted(config.headroom_multipliers):
            model.load_state_dict(start)
            seed_everything(config.seed)
            chosen = _optimizer(prepared, optimizer_state)
            base_lr = _scale(chosen, multiplier)
            runs.append(_run(prepared, chosen, multiplier))
    finally:
        model.load_state_dict(start)
        model.zero_grad(set_to_none=True)
        seed_everything(config.seed)
    assert chosen is not None
    base = LrHeadroom(
        lr=base_lr,
        optimizer=optimizer_name(chosen.optimizer),
        optimizer_source=chosen.source,
        steps=config.headroom_steps,
        multipliers=tuple(r.multiplier for r in runs),
        runs=tuple(runs),
        limit=None,
    )
    return judge_runs(runs, base)


def _optimizer(prepared: Prepared, optimizer_state: Any) -> ChosenOptimizer:
    config, loaded = prepared.config, prepared.loaded
    chosen = choose_optimizer(
        prepared.model, loaded.optimizer_hook, optimizer_state, config.optimizer, config.lr
    )
    chosen.scheduler = None  # the headroom of the rate itself: no schedule is stepped
    return chosen


def _scale(chosen: ChosenOptimizer, multiplier: float) -> float:
    """Every group at the rate it was built with times `multiplier`; returns the largest built rate."""
    built = [float(g.get("initial_lr", g["lr"])) for g in chosen.optimizer.param_groups]
    for group, lr in zip(chosen.optimizer.param_groups, built, strict=True):
        group["lr"] = lr * multiplier
    return max(built)


def _run(prepared: Prepared, chosen: ChosenOptimizer, multiplier: float) -> HeadroomRun:
    config, model = prepared.config, prepared.model
    batch = prepared.batches[0]
    steps = config.headroom_steps
    outputs: list[torch.Tensor] = []
    heads: list[dict[str, torch.Tensor]] = []
    scaler = torch.amp.GradScaler(prepared.device.split(":")[0], enabled=config.dtype == "float16")
    ticks = counted(prepared, f"lr headroom x{multiplier:g}: step", range(steps), steps)
    names: list[str] = []
    watch = HeadWatch(model)

    def step_loss(step: int) -> torch.Tensor:
        next(ticks, None)
        with watch.forward():
            output = forward(prepared, batch)
        heads.append(watch.take())
        name, stats = _output_stats(output)
        names.append(name)
        outputs.append(stats)
        return loss_of(prepared, batch, output, 0).value

    with watch:
        records = training.train(model, chosen, step_loss, steps, config.clip, scaler)
    owners = [name or "model" for name, _ in training.owners_of(model)]
    series = [
        *_ratio_series(owners, records.update_ratios),
        *_output_series(names[0] if names else "output", outputs),
        *_head_series(heads),
    ]
    return HeadroomRun(
        multiplier=multiplier,
        lr=max(float(g["lr"]) for g in chosen.optimizer.param_groups),
        loss=tuple(records.losses),
        nonfinite_step=records.divergence.step if records.divergence is not None else None,
        series=tuple(series),
    )


def _output_stats(output: Any) -> tuple[str, torch.Tensor]:
    """The main output's RMS and mean logsumexp over its last dimension (NaN for a single column)."""
    main = split_output(output).main
    if main is None:
        return "output", torch.full((2,), math.nan)
    with torch.no_grad():
        x = main.tensor.detach().double()
        rms = x.square().mean().sqrt()
        if x.dim() >= 1 and x.shape[-1] >= 2:
            log_z = torch.logsumexp(x, dim=-1).mean()
        else:
            log_z = torch.tensor(math.nan, dtype=torch.float64, device=x.device)
        return main.name, torch.stack([rms, log_z]).cpu()


def _ratio_series(owners: list[str], ratios: list[list[float]]) -> list[Series]:
    columns = list(zip(*ratios, strict=True)) if ratios else [() for _ in owners]
    return [
        Series(instrument="update_ratio", layer=name, values=tuple(col))
        for name, col in zip(owners, columns, strict=True)
    ]


def _output_series(name: str, outputs: list[torch.Tensor]) -> list[Series]:
    if not outputs:
        return []
    rms, log_z = torch.stack(outputs).T.tolist()
    out = [Series(instrument="logit_rms", layer=name, values=tuple(rms))]
    if any(math.isfinite(v) for v in log_z):
        out.append(Series(instrument="log_partition", layer=name, values=tuple(log_z)))
    return out


def _head_series(heads: list[dict[str, torch.Tensor]]) -> list[Series]:
    """Per site and head: the largest logit and the entropy at each step (NaN where not seen)."""
    sites: dict[str, int] = {}
    for step in heads:
        for site, stats in step.items():
            sites[site] = max(sites.get(site, 0), stats.shape[0])
    out: list[Series] = []
    for site, count in sites.items():
        rows = [step.get(site) for step in heads]
        host = [r.tolist() if r is not None and r.shape[0] == count else None for r in rows]
        for head in range(count):
            layer = f"{site}:h{head}"
            for column, instrument in enumerate(("attention_max_logit", "attention_entropy")):
                values = tuple(math.nan if h is None else h[head][column] for h in host)
                out.append(Series(instrument=instrument, layer=layer, values=values))
    return out
