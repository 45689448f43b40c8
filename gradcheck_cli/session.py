"""The torch collect stage: the live objects of one analysis and the passes run on them.

The pipeline runs these in its order; `repair` runs them again on changed copies of the model.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gradcheck_cli import distributed, through_time
from gradcheck_cli.anomaly import NonfiniteOrigin, find_origin
from gradcheck_cli.config import AnalyzeConfig
from gradcheck_cli.device import autocast, model_dtype, resolve_device
from gradcheck_cli.errors import InputError, TargetError
from gradcheck_cli.forward_error import forward_failure
from gradcheck_cli.functional import FunctionalActivations
from gradcheck_cli.inputs import (
    Batch,
    InputPlan,
    batches_from_hook,
    batches_from_specs,
    describe,
    describe_extra_args,
    fill_extra_args,
    generate,
    labels_for_head,
    labels_from_spec,
    move,
    plan_inputs,
    reference_input,
    search_inputs,
    stream,
    token_targets,
)
from gradcheck_cli.layer_kinds import has_normalization
from gradcheck_cli.losses import LossChoice, compute_loss, require_grad
from gradcheck_cli.outputs import left_out_feeders
from gradcheck_cli.probe import GradientProbe
from gradcheck_cli.source import locate_modules
from gradcheck_cli.specs import InputSpec
from gradcheck_cli.stats import (
    Fp16Underflow,
    LayerStats,
    LeftOutOutputs,
    ModelInfo,
    ProbeResult,
    RunInfo,
    TrainingHistory,
)
from gradcheck_cli.target import LoadedModel, redirect_stdout_to_stderr
from gradcheck_cli.trained import CheckpointInfo
from gradcheck_cli.underflow import measure_fp16_underflow


@dataclass(slots=True)
class Session:
    """The live objects of one analysis (torch tier only)."""

    config: AnalyzeConfig
    loaded: LoadedModel
    device: str
    batches: list[Batch]
    plan: InputPlan
    loss: LossChoice | None = None
    loss_scale: float = 1.0
    """float16 only: the GradScaler-style scale the probe's backward runs under (then unscaled)."""
    fp16_underflow: Fp16Underflow | None = None
    training: TrainingHistory | None = None
    checkpoint: CheckpointInfo | None = None
    """--weights: what was loaded."""
    optimizer_state: Any = None
    """--weights: the optimizer state the checkpoint holds, for --steps."""
    progress: Callable[[str], None] | None = None
    """Told, every PROGRESS_SECONDS, how far a long measurement or training has got."""


PROGRESS_SECONDS = 10.0


class _Counter:
    """`step 1200 of 1000000` for long loops, at most every PROGRESS_SECONDS."""

    def __init__(self, session: Session, what: str, total: int) -> None:
        self.session, self.what, self.total = session, what, total
        self.last = time.perf_counter()

    def __call__(self, done: int) -> None:
        now = time.perf_counter()
        if self.session.progress is not None and now - self.last >= PROGRESS_SECONDS:
            self.last = now
            self.session.progress(f"{self.what} {done} of {self.total} on {self.session.device}")


def prepare(config: AnalyzeConfig, loaded: LoadedModel, given: list[Batch] | None = None) -> Session:
    _require_trainable(loaded.module)
    device = _pick_device(loaded.module, config.device)
    float_dtype = model_dtype(config.dtype)
    loaded.module.to(device=device, dtype=float_dtype)
    if given is not None:
        batches, plan = given, InputPlan(specs=(), origin="passed to analyze()")
    elif loaded.sample_batch is not None and not config.inputs:
        batches = batches_from_hook(loaded.sample_batch, config.batches, config.seed)
        hook = _hook_name(loaded.sample_batch)
        where = "passed to analyze()" if loaded.hooks_from == "analyze()" else f"in {loaded.hooks_from}"
        plan = InputPlan(specs=(), origin=f"{hook} {where}")
    else:
        plan = _plan(config, loaded, device)
        batches = batches_from_specs(plan.specs, config.batches, config.seed, float_dtype)
    batches = _finish_batches(config, loaded.module, plan, batches, device)
    return Session(config=config, loaded=loaded, device=device, batches=batches, plan=plan)


def _require_trainable(model: nn.Module) -> None:
    """A model with nothing to train has no gradient to measure: that is "could not run", not healthy."""
    params = list(model.parameters())
    if not any(p.requires_grad for p in params):
        what = f"all {len(params)} of its parameter tensors are frozen" if params else "it has no parameters"
        raise TargetError(
            f"nothing to measure: {type(model).__name__} has no trainable parameter ({what})",
            "gradcheck measures the gradients of trainable parameters: analyse the model before "
            "freezing it, or the part of it that trains",
        )


def _hook_name(hook: Any) -> str:
    """`get_batch()` for a named function, "a function" for a lambda or a callable object."""
    name = getattr(hook, "__name__", "")
    return f"{name}()" if name.isidentifier() else "a function"


def _plan(config: AnalyzeConfig, loaded: LoadedModel, device: str) -> InputPlan:
    """--input or a builtin's inputs as given; else search by trying forward passes on candidate inputs."""
    model = loaded.module
    if config.inputs or loaded.default_inputs:
        return plan_inputs(model, config.inputs, loaded.default_inputs, config.batch_size, config.layout)

    def attempt(plan: InputPlan) -> Exception | None:
        batches = batches_from_specs(plan.specs, 1, config.seed, model_dtype(config.dtype))
        batch = _finish_batches(config, model, plan, batches, device)[0]
        try:
            with torch.no_grad(), redirect_stdout_to_stderr(), autocast(device, config.dtype):
                model(*batch.args, **batch.kwargs)
        except Exception as exc:  # the model rejected this input: try the next candidate
            return exc
        return None

    return search_inputs(model, config.batch_size, config.layout, attempt)


def _finish_batches(
    config: AnalyzeConfig, model: nn.Module, plan: InputPlan, batches: list[Batch], device: str
) -> list[Batch]:
    """Move to the device and dtype, add init_hidden()/None forward arguments and the --target-arg."""
    float_dtype = model_dtype(config.dtype)
    moved = [
        Batch(
            args=move(b.args, device, float_dtype),
            kwargs=move(b.kwargs, device, float_dtype),
            target=move(b.target, device),
        )
        for b in batches
    ]
    labelled = _with_labels(config, fill_extra_args(model, moved, plan), plan, device)
    return _with_target_arg(config, model, labelled, plan, device)


def _with_labels(config: AnalyzeConfig, batches: list[Batch], plan: InputPlan, device: str) -> list[Batch]:
    """--labels SPEC: integer labels (or float targets) beside the inputs, as each batch's target."""
    spec = config.labels
    if spec is None:
        return batches
    if plan.specs and spec.shape[0] != plan.batch_size:
        raise InputError(
            f"--labels {spec} has batch size {spec.shape[0]}, the inputs have {plan.batch_size}",
            f"give the labels the inputs' batch size, e.g. --labels {_with_batch(spec, plan.batch_size)}",
        )
    out = []
    for index, batch in enumerate(batches):
        target = batch.target
        if target is None:
            target = labels_from_spec(spec, config.seed, index).to(device)
        out.append(Batch(args=batch.args, kwargs=batch.kwargs, target=target))
    return out


def _with_batch(spec: InputSpec, size: int) -> InputSpec:
    return dataclasses.replace(spec, shape=(size, *spec.shape[1:]))


def _with_target_arg(
    config: AnalyzeConfig, model: nn.Module, batches: list[Batch], plan: InputPlan, device: str
) -> list[Batch]:
    """Models that compute their own loss take targets in forward: pass the target as that keyword.

    Without a target of its own, a batch gets labels shaped for the model's head (a sequence
    classifier's (B,), a language model's (B, T)), else next-token targets of the input's shape.
    """
    name = config.target_arg
    if not name:
        return batches
    _check_forward_takes(model, name)
    generator = stream(config.seed, "labels")
    head = _head_labels(model, batches[0], config, device) if any(b.target is None for b in batches) else None
    out = []
    for batch in batches:
        target = batch.target
        if target is None and head is not None:
            target = generate(head, generator, torch.float32)
        if target is None and plan.specs and plan.specs[0].kind == "int":
            target = token_targets(plan.specs[0], generator)
        if target is None:
            raise InputError(
                f"--target-arg {name}: no target to pass (the input is not integer tokens, and a forward "
                "without it does not show the head's shape)",
                "give labels with --labels SPEC (e.g. --labels int:16:10), or define sample_batch() "
                "returning (inputs, target) in the model file",
            )
        out.append(Batch(args=batch.args, kwargs={**batch.kwargs, name: target.to(device)}, target=None))
    return out


def _check_forward_takes(model: nn.Module, name: str) -> None:
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return
    if name in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    raise InputError(
        f"--target-arg {name}: {type(model).__name__}.forward() has no parameter {name!r} "
        f"(it takes {', '.join(params) or 'nothing'})",
        "name the forward parameter that takes the targets, or define sample_batch() returning "
        "(inputs, target) in the model file",
    )


def _head_labels(model: nn.Module, batch: Batch, config: AnalyzeConfig, device: str) -> InputSpec | None:
    """The labels the head takes, from one forward without them; None when that forward does not run."""
    size = _batch_size_of(batch)
    if size is None:
        return None
    try:
        with torch.no_grad(), redirect_stdout_to_stderr(), autocast(device, config.dtype):
            output = model(*batch.args, **batch.kwargs)
    except Exception:  # the model needs its labels to run: fall back to the input's shape
        return None
    return labels_for_head(output, size)


def _batch_size_of(batch: Batch) -> int | None:
    first = next((v for v in (*batch.args, *batch.kwargs.values()) if isinstance(v, torch.Tensor)), None)
    return int(first.shape[0]) if first is not None and first.dim() > 0 else None


def _pick_device(model: nn.Module, requested: str) -> str:
    """A model already on an accelerator stays there unless --device says otherwise."""
    current = next((p.device for p in model.parameters()), torch.device("cpu"))
    if requested == "auto" and current.type != "cpu":
        return str(current)
    return resolve_device(requested)


def measure_precision(session: Session) -> None:
    """float16: how many gradient elements flush to zero without a GradScaler, and the scale to use."""
    first = session.batches[0]

    def run_loss(dtype: str) -> torch.Tensor:
        return loss_of(session, first, forward(session, first, dtype), 0).value

    measured = measure_fp16_underflow(session.loaded.module, run_loss, session.config.seed)
    session.fp16_underflow = measured
    session.loss_scale = measured.loss_scale


def forward(session: Session, batch: Batch, dtype: str | None = None) -> Any:
    dtype = dtype or session.config.dtype
    with redirect_stdout_to_stderr(), autocast(session.device, dtype):
        try:
            return session.loaded.module(*batch.args, **batch.kwargs)
        except Exception as exc:
            inputs = (*batch.args, *([batch.kwargs] if batch.kwargs else []))
            message, hint = forward_failure(exc, session.loaded.module, session.plan.origin, inputs)
            first, _, rest = message.partition("\n")
            raise InputError(
                f"{first}{_under_autocast(session.device, dtype)}\n{rest}",
                _autocast_hint(session.device, dtype) + hint,
            ) from exc


def _under_autocast(device: str, dtype: str) -> str:
    return f" (under {dtype} autocast on {device})" if dtype in ("bfloat16", "float16") else ""


def _autocast_hint(device: str, dtype: str) -> str:
    """Some ops have no half-precision kernel on some devices (LSTM in float16 on CPU): say so first."""
    if dtype not in ("bfloat16", "float16"):
        return ""
    other = "bfloat16 or float32" if dtype == "float16" else "float32"
    return f"an op may have no {dtype} kernel on {device}: try --dtype {other}; otherwise "


def loss_of(session: Session, batch: Batch, output: Any, index: int) -> LossChoice:
    generator = stream(session.config.seed, "targets", index)
    loaded = session.loaded
    where = "passed to" if loaded.hooks_from == "analyze()" else "in"
    origin = f"{_hook_name(loaded.loss_fn)} {where} {loaded.hooks_from}"
    reference = reference_input(batch)
    choice = compute_loss(
        output, session.config.loss, batch.target, loaded.loss_fn, generator, origin, reference=reference
    )
    require_grad(choice.value, f"the loss ({choice.reason})")
    return choice


def train_steps(session: Session) -> None:
    """--steps: the user's optimizer (or --optimizer), clipping and float16 scaling as configured."""
    from gradcheck_cli import training
    from gradcheck_cli.optimizers import choose_optimizer

    config, model = session.config, session.loaded.module
    chosen = choose_optimizer(
        model, session.loaded.optimizer_hook, session.optimizer_state, config.optimizer, config.lr
    )
    # float16 trains as a script would: with a GradScaler (a pass-through for other dtypes).
    scaler = torch.amp.GradScaler(session.device.split(":")[0], enabled=config.dtype == "float16")

    counter = _Counter(session, "training: step", config.steps)

    def step_loss(step: int) -> torch.Tensor:
        counter(step)
        index = step % len(session.batches)
        batch = session.batches[index]
        return loss_of(session, batch, forward(session, batch), index).value

    records = training.train(model, chosen, step_loss, config.steps, config.clip, scaler)
    session.training = training.history(chosen, training.owners_of(model), records, config.clip, config.steps)


def load_checkpoint(session: Session) -> None:
    """--weights: copy the checkpoint into the model (on the analysis device), keep its optimizer state."""
    from gradcheck_cli.weights import load_weights

    assert session.config.weights is not None
    info, raw = load_weights(
        session.loaded.module, session.config.weights, session.device, session.config.weights_partial
    )
    session.checkpoint, session.optimizer_state = info, raw.optimizer_state


def probe(session: Session, started: float) -> ProbeResult:
    model = session.loaded.module
    sources = locate_modules(model)
    losses: list[float] = []
    left_out: LeftOutOutputs | None = None
    # Under torchrun each rank measures its share of the batches; the raw sums are combined below.
    mine = distributed.my_batches(len(session.batches))
    with GradientProbe(model, sources) as gradient_probe:
        functional_calls = FunctionalActivations(lambda: gradient_probe.last_layer)
        counter = _Counter(session, "measuring batch", len(session.batches))
        for done, index in enumerate(mine):
            counter(done)
            batch = session.batches[index]
            model.zero_grad(set_to_none=True)
            with functional_calls.watch():  # the model's forward only, not the loss
                output = forward(session, batch)
            choice = loss_of(session, batch, output, index)
            left_out = left_out or left_out_feeders(model, choice.value, choice.left_out)
            (choice.value * session.loss_scale).backward()
            gradient_probe.collect(unscale=session.loss_scale)
            losses.append(choice.value.detach())  # type: ignore[arg-type]
            session.loss = choice
        distributed.combine_batches(gradient_probe, mine, len(session.batches))
        layers = gradient_probe.layer_stats()
        activations = gradient_probe.activation_stats() + functional_calls.stats()
    model.zero_grad(set_to_none=True)
    first = session.batches[0]
    recurrent = through_time.measure(model, lambda: forward(session, first), session.config.seed, sources)
    origin = _nonfinite_origin(session, layers)
    loss_values = torch.stack(losses).float().tolist() if losses else []  # type: ignore[arg-type]
    loss_values = distributed.gather_floats(loss_values)
    return ProbeResult(
        model=_model_info(session),
        run=_run_info(session, time.perf_counter() - started),
        layers=layers,
        activations=activations,
        through_time=recurrent,
        has_normalization=has_normalization(model),
        loss_value=sum(loss_values) / len(loss_values) if loss_values else float("nan"),
        fp16_underflow=session.fp16_underflow,
        training=session.training,
        checkpoint=session.checkpoint,
        nonfinite_op=origin.op if origin else None,
        nonfinite_source=origin.source if origin else None,
        left_out=left_out,
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


def _batch_shapes(batches: list[Batch]) -> tuple[str, ...]:
    """What a hook or the caller handed over, as the header shows it: ('float32[32x784]',)."""
    if not batches:
        return ()
    first = batches[0]
    return tuple(describe(a) for a in first.args) + tuple(
        f"{k}={describe(v)}" for k, v in first.kwargs.items()
    )


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
    plan = session.plan
    inputs = tuple(str(s) for s in plan.specs) or _batch_shapes(session.batches)
    inputs += describe_extra_args(plan)
    if session.config.target_arg:
        inputs += (f"{session.config.target_arg}=<targets>",)
    return RunInfo(
        batches=len(session.batches),
        steps=session.config.steps,
        seed=session.config.seed,
        loss=loss.name if loss else session.config.loss,
        loss_reason=loss.reason if loss else "",
        inputs=inputs,
        seconds=seconds,
        input_origin=plan.origin,
    )
