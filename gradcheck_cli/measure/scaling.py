"""`gradcheck scale`: build the model at each width, run t = 1..steps on one fixed batch with the
user's optimizer, and record per module the RMS of its output, of the loss gradient at its output,
and of its output's change since t = 1.

t = 1 is the forward at init; each later t follows one optimizer step (as mup's coord_check
counts). The batch (and any generated labels) comes from `config.seed` at every width and seed;
each seed of the sweep (`config.seed + i`) changes the init only. Returns a torch-free
`ScaleSamples` for the judge (`judge/scaling.py`) to fit exponents on.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from gradcheck_cli.config.analyze_config import AnalyzeConfig
from gradcheck_cli.config.scale_settings import ScaleSettings
from gradcheck_cli.load.target import load
from gradcheck_cli.measure.device import seed_everything
from gradcheck_cli.measure.optimizers import choose_optimizer
from gradcheck_cli.measure.passes import forward, loss_of
from gradcheck_cli.measure.preparation import prepare
from gradcheck_cli.measure.scale_roles import Shape, classify, role_of, select_modules
from gradcheck_cli.records.errors import TargetError
from gradcheck_cli.records.scaling import ModuleSamples, ScaleSamples

Progress = Callable[[str], None]
Series = dict[str, list[float | None]]
"""One module's RMS per quantity, indexed t - 1, at one width and seed."""


def measure_widths(config: AnalyzeConfig, progress: Progress | None = None) -> ScaleSamples:
    settings = config.scale
    assert settings is not None
    started = time.perf_counter()
    seeds = tuple(config.seed + i for i in range(settings.seeds))
    runs: dict[tuple[int, int], dict[str, Series]] = {}
    shapes: dict[int, dict[str, Shape]] = {}
    optimizer, device = "", ""
    for seed in seeds:
        for width in settings.widths:
            if progress is not None:
                progress(f"width {settings.key}={width}, seed {seed}: {settings.steps} steps")
            series, shapes[width], optimizer, device = _one_run(config, settings, width, seed)
            runs[seed, width] = series
    return ScaleSamples(
        target=config.target.raw,
        key=settings.key,
        widths=settings.widths,
        seeds=seeds,
        steps=settings.steps,
        optimizer=optimizer,
        device=device,
        modules=_samples(settings, seeds, runs, shapes),
        seconds=time.perf_counter() - started,
    )


def _one_run(
    config: AnalyzeConfig, settings: ScaleSettings, width: int, seed: int
) -> tuple[dict[str, Series], dict[str, Shape], str, str]:
    """The model built at `width` with `seed`; `steps` forwards and backwards on the fixed batch."""
    seed_everything(seed)
    loaded = _build(config, settings.key, width)
    prepared = prepare(dataclasses.replace(config, batches=1), loaded)
    model, batch = prepared.model, prepared.batches[0]
    model.train()
    chosen = choose_optimizer(
        model, loaded.optimizer_hook, None, config.optimizer, config.lr, loaded.scheduler_hook
    )
    modules = select_modules(model)
    recorder = _Recorder(settings.steps)
    handles = [m.register_forward_hook(recorder.hook(name)) for name, m in modules.items()]
    try:
        for t in range(1, settings.steps + 1):
            recorder.t = t
            chosen.optimizer.zero_grad(set_to_none=True)
            torch.manual_seed(seed)  # the same dropout masks at every t: the update is the weights' doing
            output = forward(prepared, batch)
            loss = loss_of(prepared, batch, output, 0).value
            if not torch.isfinite(loss):
                break  # a diverged run: the steps before it still count
            loss.backward()
            if t < settings.steps:
                chosen.optimizer.step()
                if chosen.scheduler is not None:
                    chosen.scheduler.step()
    finally:
        for handle in handles:
            handle.remove()
    shapes = {name: classify(module) for name, module in modules.items()}
    return recorder.series, shapes, chosen.source, prepared.device


def _build(config: AnalyzeConfig, key: str, width: int) -> Any:
    if config.target.kind == "builtin":
        return load(config.target, config.init_args, {**config.arch_opts, key: width})
    try:
        return load(config.target, {**config.init_args, key: width}, config.arch_opts)
    except TargetError as exc:
        raise TargetError(
            f"building the model with {key}={width}: {exc.message}",
            exc.hint or f"the model's constructor (or factory) must take the keyword {key!r}",
        ) from exc


class _Recorder:
    """Forward hooks that record each module's output RMS, its change since t = 1, and (through a
    tensor hook) the RMS of the gradient arriving at it."""

    def __init__(self, steps: int) -> None:
        self.steps, self.t = steps, 1
        self.series: dict[str, Series] = {}
        self.first: dict[str, torch.Tensor] = {}
        self.seen: set[tuple[str, int]] = set()

    def _slot(self, name: str) -> Series:
        if name not in self.series:
            self.series[name] = {q: [None] * self.steps for q in ("forward", "backward", "update")}
        return self.series[name]

    def hook(self, name: str) -> Callable[[nn.Module, Any, Any], None]:
        def record(module: nn.Module, args: Any, output: Any) -> None:
            out = _first_tensor(output)
            if out is None or (name, self.t) in self.seen:
                return  # not a float tensor, or a module called twice in one forward: its first call counts
            self.seen.add((name, self.t))
            t, slot, value = self.t, self._slot(name), out.detach().float()
            slot["forward"][t - 1] = _rms(value)
            if t == 1:
                self.first[name] = value.clone()
            elif self.first.get(name) is not None and self.first[name].shape == value.shape:
                slot["update"][t - 1] = _rms(value - self.first[name])
            if out.requires_grad:
                out.register_hook(
                    lambda grad: slot["backward"].__setitem__(t - 1, _rms(grad.detach().float()))
                )

        return record


def _first_tensor(output: Any) -> torch.Tensor | None:
    if isinstance(output, (tuple, list)) and output:
        output = output[0]
    if isinstance(output, torch.Tensor) and output.is_floating_point() and output.numel():
        return output
    return None


def _rms(value: torch.Tensor) -> float | None:
    rms = float(value.pow(2).mean().sqrt())
    return rms if math.isfinite(rms) else None


def _samples(
    settings: ScaleSettings,
    seeds: tuple[int, ...],
    runs: dict[tuple[int, int], dict[str, Series]],
    shapes: dict[int, dict[str, Shape]],
) -> tuple[ModuleSamples, ...]:
    """The modules present at every width, in the smallest model's order, with their role."""
    widths = settings.widths
    names = [n for n in shapes[widths[0]] if all(n in shapes[w] for w in widths)]
    out = []
    for name in names:
        per_width = [shapes[w][name] for w in widths]
        grids = {
            q: tuple(
                tuple(tuple(runs[s, w].get(name, {}).get(q) or [None] * settings.steps) for w in widths)
                for s in seeds
            )
            for q in ("forward", "backward", "update")
        }
        out.append(
            ModuleSamples(
                name=name,
                kind=per_width[0].kind,
                role=role_of(per_width),
                fan_in=tuple(s.fan_in for s in per_width),
                fan_out=tuple(s.fan_out for s in per_width),
                forward=grids["forward"],
                backward=grids["backward"],
                update=grids["update"],
            )
        )
    return tuple(out)
