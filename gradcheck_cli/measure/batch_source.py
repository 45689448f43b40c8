"""The batch source: finished batches for one prepared analysis, the first ones and more on demand.

Input preparation builds it and hands it down with the batches; collection asks it for more
batches when a statistic needs more samples (observe.py). It makes raw batches (from the plan's
specs or a sample_batch() hook, batches.py) and finishes them: moved to the device and dtype,
the init_hidden()/None forward arguments appended, --labels and the --target-arg added.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gradcheck_cli.config.analyze_config import AnalyzeConfig
from gradcheck_cli.config.specs import InputSpec
from gradcheck_cli.load.target import redirect_stdout_to_stderr
from gradcheck_cli.measure.batches import (
    Batch,
    batches_from_hook,
    batches_from_specs,
    generate,
    labels_for_head,
    labels_from_spec,
    move,
    stream,
    token_targets,
)
from gradcheck_cli.measure.device import autocast, model_dtype
from gradcheck_cli.measure.inputs import InputPlan
from gradcheck_cli.records.errors import InputError

MORE_SEED = 104729
"""Added to --seed for the extra batches, so they are new draws, not the measured batches again."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchSource:
    """Where the batches come from and how they are finished; `more` makes new ones like them."""

    config: AnalyzeConfig
    model: nn.Module
    plan: InputPlan
    device: str
    hook: Callable[[], Any] | None = None
    """sample_batch(), when the batches come from it (the plan then has no specs)."""
    repeatable: bool = True
    """False when the batches were handed over as they are (or by a hook passed to analyze())."""

    def make(self, count: int, seed: int) -> list[Batch]:
        """`count` finished batches drawn with `seed`; none when there is nothing to draw from."""
        if self.plan.specs:
            raw = batches_from_specs(self.plan.specs, count, seed, model_dtype(self.config.dtype))
        elif self.hook is not None:
            raw = batches_from_hook(self.hook, count, seed)
        else:
            return []
        return self.finish(raw)

    def more(self, count: int) -> list[Batch]:
        """More batches like the measured ones (new random draws), for statistics that need more
        samples (observe.py); none when the batches were handed over as they are."""
        return self.make(count, self.config.seed + MORE_SEED) if self.repeatable else []

    def finish(self, batches: list[Batch]) -> list[Batch]:
        """Move to the device and dtype, add init_hidden()/None forward arguments and the --target-arg."""
        float_dtype = model_dtype(self.config.dtype)
        moved = [
            Batch(
                args=move(b.args, self.device, float_dtype),
                kwargs=move(b.kwargs, self.device, float_dtype),
                labels=move(b.labels, self.device),
            )
            for b in batches
        ]
        filled = fill_extra_args(self.model, moved, self.plan)
        return _with_target_arg(self, _with_labels(self.config, filled, self.plan, self.device))


def fill_extra_args(model: nn.Module, batches: list[Batch], plan: InputPlan) -> list[Batch]:
    """Append the required extra forward arguments: model.init_hidden(batch) where it exists, else None."""
    if not plan.extra_args:
        return batches
    out = []
    for batch in batches:
        extras = tuple(
            model.init_hidden(plan.batch_size) if kind == "init_hidden" else None  # type: ignore[operator]
            for kind in plan.extra_args
        )
        out.append(Batch(args=batch.args + extras, kwargs=batch.kwargs, labels=batch.labels))
    return out


def _with_labels(config: AnalyzeConfig, batches: list[Batch], plan: InputPlan, device: str) -> list[Batch]:
    """--labels SPEC: integer labels (or float targets) beside the inputs, as each batch's labels."""
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
        labels = batch.labels
        if labels is None:
            labels = labels_from_spec(spec, config.seed, index).to(device)
        out.append(Batch(args=batch.args, kwargs=batch.kwargs, labels=labels))
    return out


def _with_batch(spec: InputSpec, size: int) -> InputSpec:
    return dataclasses.replace(spec, shape=(size, *spec.shape[1:]))


def _with_target_arg(source: BatchSource, batches: list[Batch]) -> list[Batch]:
    """Models that compute their own loss take targets in forward: pass the labels as that keyword.

    Without labels of its own, a batch gets labels shaped for the model's head (a sequence
    classifier's (B,), a language model's (B, T)), else next-token targets of the input's shape.
    """
    config, model, plan, device = source.config, source.model, source.plan, source.device
    name = config.target_arg
    if not name:
        return batches
    _check_forward_takes(model, name)
    generator = stream(config.seed, "labels")
    unlabelled = any(b.labels is None for b in batches)
    head = _head_labels(model, batches[0], config, device) if unlabelled else None
    head = _like_tokens(head, batches[0])
    out = []
    for batch in batches:
        labels = batch.labels
        if labels is None and head is not None:
            labels = generate(head, generator, torch.float32)
        if labels is None and plan.specs and plan.specs[0].kind == "int":
            labels = token_targets(plan.specs[0], generator)
        if labels is None:
            vocabulary = decoder_vocabulary(model, batch)
            labels = token_targets(vocabulary, generator) if vocabulary is not None else None
        if labels is None:
            raise InputError(
                f"--target-arg {name}: no target to pass (the input is not integer tokens, and a forward "
                "without it does not show the head's shape)",
                "give labels with --labels SPEC (e.g. --labels int:16:10), or define sample_batch() "
                "returning (inputs, target) in the model file",
            )
        out.append(Batch(args=batch.args, kwargs={**batch.kwargs, name: labels.to(device)}, labels=None))
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
    size = batch_size_of(batch)
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
    size = batch_size_of(batch)
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


def batch_size_of(batch: Batch) -> int | None:
    """The first dimension of the batch's first tensor (positional first); None without one."""
    first = next((v for v in (*batch.args, *batch.kwargs.values()) if isinstance(v, torch.Tensor)), None)
    return int(first.shape[0]) if first is not None and first.dim() > 0 else None
