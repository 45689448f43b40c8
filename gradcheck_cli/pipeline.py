"""analyze(config) -> Report: the only module that knows the order of the stages."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gradcheck_cli import through_time
from gradcheck_cli.anomaly import NonfiniteOrigin, find_origin
from gradcheck_cli.config import AnalyzeConfig
from gradcheck_cli.device import autocast, model_dtype, resolve_device, seed_everything
from gradcheck_cli.diagnose import check_threshold_ids, diagnose
from gradcheck_cli.errors import InputError
from gradcheck_cli.functional import FunctionalActivations
from gradcheck_cli.inputs import (
    Batch,
    InputPlan,
    batches_from_hook,
    batches_from_specs,
    describe,
    move,
    plan_inputs,
)
from gradcheck_cli.locate import locate_modules
from gradcheck_cli.losses import LossChoice, compute_loss
from gradcheck_cli.probe import GradientProbe, has_normalization
from gradcheck_cli.report import Report, build_report
from gradcheck_cli.stats import LayerStats, ModelInfo, ProbeResult, RunInfo, TrainingHistory
from gradcheck_cli.target import LoadedModel, load, redirect_stdout_to_stderr

Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    pass


@dataclass(slots=True)
class Session:
    """The live objects of one analysis (torch tier only)."""

    config: AnalyzeConfig
    loaded: LoadedModel
    device: str
    batches: list[Batch]
    plan: InputPlan
    loss: LossChoice | None = None
    training: TrainingHistory | None = None


def analyze(config: AnalyzeConfig, progress: Progress = _quiet) -> Report:
    started = time.perf_counter()
    check_threshold_ids(config.thresholds)
    seed_everything(config.seed)
    progress(f"loading {config.target.raw}")
    loaded = load(config.target, config.init_args, config.arch_opts)
    session = prepare(config, loaded)
    if config.steps:
        progress(f"training {config.steps} steps")
        train_steps(session)
    progress(f"measuring {len(session.batches)} batches on {session.device}")
    result = probe(session, started)
    progress("diagnosing")
    diagnosis = diagnose(result, config.thresholds)
    report = build_report(config.target.raw, result, diagnosis.findings, diagnosis.layer_status)
    if result.training is not None:
        report = dataclasses.replace(
            report, extra={**report.extra, "training": training_section(result.training)}
        )
    return report


def training_section(history: TrainingHistory) -> dict[str, object]:
    """The --steps history for the JSON report: loss and per-layer gradient norm at each step."""
    return {
        "optimizer": history.optimizer,
        "lr": history.lr,
        "loss": list(history.loss),
        "grad_norms": {name: list(values) for name, values in history.grad_norms.items()},
    }


def prepare(config: AnalyzeConfig, loaded: LoadedModel) -> Session:
    device = _pick_device(loaded.module, config.device)
    loaded.module.to(device=device, dtype=model_dtype(config.dtype))
    plan = plan_inputs(loaded.module, config.inputs, loaded.default_inputs, config.batch_size, config.layout)
    if loaded.sample_batch is not None and not config.inputs:
        batches = batches_from_hook(loaded.sample_batch, config.batches, config.seed)
        plan = InputPlan(specs=(), origin="sample_batch()")
    else:
        batches = batches_from_specs(plan.specs, config.batches, config.seed, model_dtype(config.dtype))
    float_dtype = model_dtype(config.dtype)
    batches = [
        Batch(
            args=move(b.args, device, float_dtype),
            kwargs=move(b.kwargs, device, float_dtype),
            target=move(b.target, device),
        )
        for b in batches
    ]
    return Session(config=config, loaded=loaded, device=device, batches=batches, plan=plan)


def _pick_device(model: nn.Module, requested: str) -> str:
    """A model already on an accelerator stays there unless --device says otherwise."""
    current = next((p.device for p in model.parameters()), torch.device("cpu"))
    if requested == "auto" and current.type != "cpu":
        return str(current)
    return resolve_device(requested)


def forward(session: Session, batch: Batch) -> Any:
    with redirect_stdout_to_stderr(), autocast(session.device, session.config.dtype):
        try:
            return session.loaded.module(*batch.args, **batch.kwargs)
        except Exception as exc:
            raise InputError(
                f"the model's forward raised {type(exc).__name__}: {_first_line(exc)}"
                f"\n  inputs tried ({session.plan.origin}): {describe(batch.args) if batch.args else ''}"
                f"{describe(batch.kwargs) if batch.kwargs else ''}",
                "pass the input shape with --input (e.g. --input 16x3x32x32, int:8x128:50257), "
                "or define sample_batch() in the model file",
            ) from exc


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def loss_of(session: Session, batch: Batch, output: Any, index: int) -> LossChoice:
    generator = torch.Generator().manual_seed(session.config.seed * 1000 + index)
    return compute_loss(output, session.config.loss, batch.target, session.loaded.loss_fn, generator)


def train_steps(session: Session) -> None:
    model = session.loaded.module
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer: torch.optim.Optimizer
    if session.config.optimizer == "adam":
        optimizer = torch.optim.Adam(params, lr=session.config.lr)
    else:
        optimizer = torch.optim.SGD(params, lr=session.config.lr)
    model.train()
    owners = [(name, list(m.parameters(recurse=False))) for name, m in model.named_modules()]
    owners = [(name, ps) for name, ps in owners if any(p.requires_grad for p in ps)]
    losses, norms = [], []
    for step in range(session.config.steps):
        batch = session.batches[step % len(session.batches)]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_of(session, batch, forward(session, batch), step % len(session.batches)).value
        loss.backward()
        losses.append(loss.detach().float())
        norms.append(_layer_grad_norms(owners, loss.device))
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    session.training = _history(session, [name for name, _ in owners], losses, norms)


def _history(
    session: Session, names: list[str], losses: list[torch.Tensor], norms: list[torch.Tensor]
) -> TrainingHistory:
    # One host transfer for the whole history.
    host = torch.stack([torch.stack(losses), *torch.stack(norms).T]).tolist() if losses else []
    return TrainingHistory(
        optimizer=session.config.optimizer,
        lr=session.config.lr,
        loss=tuple(host[0]) if host else (),
        grad_norms={name: tuple(row) for name, row in zip(names, host[1:], strict=True)},
    )


def _layer_grad_norms(owners: list[tuple[str, list[nn.Parameter]]], device: torch.device) -> torch.Tensor:
    """Each module's own parameter-gradient L2 norm (NaN when none got a gradient), on the device."""
    out = []
    for _, params in owners:
        grads = [p.grad.detach().float().square().sum() for p in params if p.grad is not None]
        out.append(torch.stack(grads).sum().sqrt() if grads else torch.tensor(math.nan, device=device))
    return torch.stack(out) if out else torch.zeros(0, device=device)


def probe(session: Session, started: float) -> ProbeResult:
    model = session.loaded.module
    sources = locate_modules(model)
    losses: list[float] = []
    with GradientProbe(model, sources) as gradient_probe:
        functional_calls = FunctionalActivations(lambda: gradient_probe.last_layer)
        for index, batch in enumerate(session.batches):
            model.zero_grad(set_to_none=True)
            with functional_calls:  # the model's forward only, not the loss
                output = forward(session, batch)
            choice = loss_of(session, batch, output, index)
            choice.value.backward()
            gradient_probe.collect()
            losses.append(choice.value.detach())  # type: ignore[arg-type]
            session.loss = choice
        layers = gradient_probe.layer_stats()
        activations = gradient_probe.activation_stats() + functional_calls.stats()
    model.zero_grad(set_to_none=True)
    first = session.batches[0]
    recurrent = through_time.measure(model, lambda: forward(session, first), session.config.seed, sources)
    origin = _nonfinite_origin(session, layers)
    loss_values = torch.stack(losses).float().tolist() if losses else []  # type: ignore[arg-type]
    return ProbeResult(
        model=_model_info(session),
        run=_run_info(session, time.perf_counter() - started),
        layers=layers,
        activations=activations,
        through_time=recurrent,
        has_normalization=has_normalization(model),
        loss_value=sum(loss_values) / len(loss_values) if loss_values else float("nan"),
        training=session.training,
        nonfinite_op=origin.op if origin else None,
        nonfinite_source=origin.source if origin else None,
    )


def _nonfinite_origin(session: Session, layers: tuple[LayerStats, ...]) -> NonfiniteOrigin | None:
    """Only when the probe saw NaN/inf: re-run one batch under anomaly detection to name the op."""
    if not any(layer.nonfinite for layer in layers):
        return None
    origin = None
    for index, batch in enumerate(session.batches):
        origin = find_origin(_loss_runner(session, batch, index))
        if origin is not None:
            break
    session.loaded.module.zero_grad(set_to_none=True)
    return origin


def _loss_runner(session: Session, batch: Batch, index: int) -> Callable[[], torch.Tensor]:
    return lambda: loss_of(session, batch, forward(session, batch), index).value


def _model_info(session: Session) -> ModelInfo:
    model = session.loaded.module
    params = {id(p): p for p in model.parameters()}.values()
    return ModelInfo(
        class_name=type(model).__name__,
        parameters=sum(p.numel() for p in params),
        trainable=sum(p.numel() for p in params if p.requires_grad),
        device=session.device,
        dtype=session.config.dtype,
        found_by=session.loaded.found_by,
        init_args=dict(session.loaded.init_args),
        source=session.loaded.source,
    )


def _run_info(session: Session, seconds: float) -> RunInfo:
    loss = session.loss
    inputs = tuple(str(s) for s in session.plan.specs) or (session.plan.origin,)
    return RunInfo(
        batches=len(session.batches),
        steps=session.config.steps,
        seed=session.config.seed,
        loss=loss.name if loss else session.config.loss,
        loss_reason=loss.reason if loss else "",
        inputs=inputs,
        seconds=seconds,
    )
