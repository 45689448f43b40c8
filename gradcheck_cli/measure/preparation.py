"""The inputs stage: put the model on its device and dtype and build the sample batches (given,
from sample_batch(), from --input, or searched for), with labels and forward arguments added.
Returns the Session the later stages run on."""

from __future__ import annotations

import dataclasses
import inspect

import torch
from torch import nn

from gradcheck_cli.config.analyze_config import AnalyzeConfig
from gradcheck_cli.config.specs import InputSpec
from gradcheck_cli.load.target import LoadedModel, redirect_stdout_to_stderr
from gradcheck_cli.measure.device import autocast, model_dtype, resolve_device
from gradcheck_cli.measure.inputs import (
    Batch,
    InputPlan,
    batches_from_hook,
    batches_from_specs,
    fill_extra_args,
    generate,
    labels_for_head,
    labels_from_spec,
    move,
    plan_inputs,
    search_inputs,
    stream,
    token_targets,
)
from gradcheck_cli.measure.session import Session, hook_name
from gradcheck_cli.records.errors import InputError, TargetError


def prepare(config: AnalyzeConfig, loaded: LoadedModel, given: list[Batch] | None = None) -> Session:
    _require_trainable(loaded.module)
    device = _pick_device(loaded.module, config.device)
    float_dtype = model_dtype(config.dtype)
    loaded.module.to(device=device, dtype=float_dtype)
    if given is not None:
        batches, plan = given, InputPlan(specs=(), origin="passed to analyze()")
    elif loaded.sample_batch is not None and not config.inputs:
        batches = batches_from_hook(loaded.sample_batch, config.batches, config.seed)
        hook = hook_name(loaded.sample_batch)
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


def more_batches(session: Session, count: int) -> list[Batch]:
    """More batches like the measured ones (new random draws), for statistics that need more
    samples (observe.py); none when the batches were handed over as they are."""
    config, loaded, plan = session.config, session.loaded, session.plan
    seed = config.seed + 104729
    if plan.specs:
        more = batches_from_specs(plan.specs, count, seed, model_dtype(config.dtype))
    elif loaded.sample_batch is not None and not config.inputs and "analyze()" not in plan.origin:
        more = batches_from_hook(loaded.sample_batch, count, seed)
    else:
        return []
    return _finish_batches(config, loaded.module, plan, more, session.device)


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
    head = _like_tokens(head, batches[0])
    out = []
    for batch in batches:
        target = batch.target
        if target is None and head is not None:
            target = generate(head, generator, torch.float32)
        if target is None and plan.specs and plan.specs[0].kind == "int":
            target = token_targets(plan.specs[0], generator)
        if target is None:
            vocabulary = decoder_vocabulary(model, batch)
            target = token_targets(vocabulary, generator) if vocabulary is not None else None
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


DECODER_TARGET_LENGTH = 16
"""Length of the label sequences made for an encoder-decoder over float features."""


def decoder_vocabulary(model: nn.Module, batch: Batch) -> InputSpec | None:
    """Labels for an encoder-decoder whose input is float features (speech): token sequences in the
    decoder's vocabulary, read off its token embedding (the one named for the decoder, else the
    largest), DECODER_TARGET_LENGTH long, or the decoder's positions when fewer."""
    embeddings = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Embedding)]
    size = _batch_size_of(batch)
    if not embeddings or size is None:
        return None
    decoder = [(n, m) for n, m in embeddings if "decoder" in n or "embed_tokens" in n or n.endswith("tok")]
    _, tokens = max(decoder or embeddings, key=lambda item: item[1].num_embeddings)
    positions = [m.num_embeddings for n, m in embeddings if "pos" in n and m is not tokens]
    length = min([DECODER_TARGET_LENGTH, *positions])
    return InputSpec(shape=(size, length), kind="int", low=0, high=tokens.num_embeddings)


def _like_tokens(head: InputSpec | None, batch: Batch) -> InputSpec | None:
    """A language model's targets are shaped like its input tokens: one per position (B, T), in the
    head's vocabulary, even when the forward without targets returns logits for the last position
    only (nanoGPT's `lm_head(x[:, [-1], :])`, (B, 1, V))."""
    tokens = next((v for v in (*batch.args, *batch.kwargs.values()) if isinstance(v, torch.Tensor)), None)
    if head is None or head.kind != "int" or len(head.shape) != 2 or tokens is None:
        return head
    if tokens.dim() != 2 or tokens.is_floating_point() or tuple(tokens.shape) == head.shape:
        return head
    return dataclasses.replace(head, shape=tuple(tokens.shape))


def _batch_size_of(batch: Batch) -> int | None:
    first = next((v for v in (*batch.args, *batch.kwargs.values()) if isinstance(v, torch.Tensor)), None)
    return int(first.shape[0]) if first is not None and first.dim() > 0 else None


def _pick_device(model: nn.Module, requested: str) -> str:
    """A model already on an accelerator stays there unless --device says otherwise."""
    current = next((p.device for p in model.parameters()), torch.device("cpu"))
    if requested == "auto" and current.type != "cpu":
        return str(current)
    return resolve_device(requested)
