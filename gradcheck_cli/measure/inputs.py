"""Input inference: which inputs the model takes (--input, a builtin's defaults, or read off its
first layer), as an InputPlan, and the forward arguments it needs after them. The search that
tries candidate inputs is input_search.py; making the batches is batches.py and batch_source.py."""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from gradcheck_cli.config.specs import InputSpec, parse_input
from gradcheck_cli.records.errors import InputError

DEFAULT_BATCH = 16
DEFAULT_SEQ = 32

SPATIAL_SIZES = (28, 32, 64, 224)
VOLUME_SIZES = (16, 32)
LATENT_SIZES = (1, 4, 8)


@dataclass(frozen=True, slots=True, kw_only=True)
class InputPlan:
    """Where the batches come from, said in the report."""

    specs: tuple[InputSpec, ...]
    origin: str
    """--input, sample_batch(), builtin, or inferred from <layer>."""
    extra_args: tuple[str, ...] = ()
    """Required forward arguments after the inputs: 'init_hidden' (model.init_hidden(batch)) or 'none'."""
    batch_size: int = DEFAULT_BATCH


def revealing_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules whose type tells the shape of the input they take, in registration order."""
    return [(n, m) for n, m in model.named_modules() if _is_revealing(m)]


_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_REVEALING = (nn.Embedding, nn.Linear, nn.RNNBase, nn.RNNCellBase, *_CONVS)


def _is_revealing(module: nn.Module) -> bool:
    return isinstance(module, _REVEALING)


def infer_inputs(model: nn.Module, batch_size: int | None, layout: str | None) -> InputPlan:
    """An input for the model, read from its first layer (registration order) that reveals the shape."""
    size = batch_size or DEFAULT_BATCH
    for name, module in revealing_modules(model):
        specs = candidate_specs(model, module, size, layout)
        return plan_for_layer(model, name, module, specs[0], size, "")
    raise no_revealing_layer(model)


def no_revealing_layer(model: nn.Module) -> InputError:
    return InputError(
        f"cannot infer an input for {type(model).__name__}: no Linear, Conv, Embedding or recurrent layer found",
        "pass one with --input, e.g. --input 16x784, or define sample_batch() in the file",
    )


def plan_for_layer(
    model: nn.Module, name: str, module: nn.Module, spec: InputSpec, size: int, note: str
) -> InputPlan:
    origin = f"inferred from {name or 'the model'} ({type(module).__name__}){note}"
    tokens = token_inputs(model, size, given=1)
    if tokens:
        origin += "; " + ", ".join(f"{name}: token ids below {int(t.high or 2)}" for name, t in tokens)
    specs = (spec, *(token for _, token in tokens))
    return InputPlan(
        specs=specs, origin=origin, extra_args=extra_forward_args(model, len(specs)), batch_size=size
    )


TOKEN_NAMES = re.compile(r"(^|_)(ids|tokens?|tgt|targets?_in|decoder_input)($|_)|_ids$", re.IGNORECASE)
"""Forward parameters that take token ids: decoder_input_ids, tokens, tgt, input_ids, ..."""


def token_inputs(model: nn.Module, size: int, given: int) -> list[tuple[str, InputSpec]]:
    """Required positional forward parameters after the first `given` that take token ids (a
    decoder's `decoder_input_ids`, Whisper's `tokens`), each with tokens for the model's vocabulary."""
    vocabulary = _vocabulary(model)
    if vocabulary is None:
        return []
    name, embedding = vocabulary
    out = []
    for param in _required_positional(model)[given:]:
        if not TOKEN_NAMES.search(param.name):
            break
        out.append((param.name, _tokens(embedding, size, _sequence_lengths(model, embedding)[0], True)))
    return out


def _vocabulary(model: nn.Module) -> tuple[str, nn.Embedding] | None:
    """The token embedding: the nn.Embedding with the most rows (not positions or token types)."""
    embeddings = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Embedding)]
    return max(embeddings, key=lambda item: item[1].num_embeddings) if embeddings else None


def _required_positional(model: nn.Module) -> list[inspect.Parameter]:
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return []
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return [p for p in positional if p.default is inspect.Parameter.empty]


def candidate_specs(model: nn.Module, module: nn.Module, size: int, layout: str | None) -> list[InputSpec]:
    """Inputs to try for `module` as the model's first layer, the most likely first."""
    if isinstance(module, nn.Embedding):
        batch_first = _batch_first(model, layout)
        return [_tokens(module, size, length, batch_first) for length in _sequence_lengths(model, module)]
    if isinstance(module, nn.Linear):
        return [InputSpec(shape=(size, module.in_features))]
    if isinstance(module, nn.RNNCellBase):
        return [InputSpec(shape=(size, module.input_size))]
    if isinstance(module, nn.RNNBase):
        batch_first = module.batch_first if layout is None else layout == "batch-first"
        seq_shape = (size, DEFAULT_SEQ) if batch_first else (DEFAULT_SEQ, size)
        return [InputSpec(shape=seq_shape + (module.input_size,))]
    return _conv_specs(module, size)


_CONV_DIMS = (
    (nn.Conv1d, 1),
    (nn.Conv2d, 2),
    (nn.Conv3d, 3),
    (nn.ConvTranspose1d, 1),
    (nn.ConvTranspose2d, 2),
    (nn.ConvTranspose3d, 3),
)


def _conv_specs(module: nn.Module, size: int) -> list[InputSpec]:
    dims = next((d for kind, d in _CONV_DIMS if isinstance(module, kind)), 3)  # subclasses too (StdConv2d)
    channels = int(getattr(module, "in_channels", 1))
    if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        sides: tuple[int, ...] = LATENT_SIZES  # a generator starts from latent noise (B, nz, 1, 1)
    elif dims == 3:
        sides = VOLUME_SIZES
    else:
        preferred = 28 if channels == 1 else 32
        sides = (preferred, *(s for s in SPATIAL_SIZES if s != preferred))
    return [InputSpec(shape=(size, channels) + (side,) * dims) for side in sides]


def _tokens(module: nn.Embedding, size: int, length: int, batch_first: bool) -> InputSpec:
    shape = (size, length) if batch_first else (length, size)
    return InputSpec(shape=shape, kind="int", low=0, high=module.num_embeddings)


def _sequence_lengths(model: nn.Module, tokens: nn.Embedding) -> list[int]:
    """Within a position embedding's size (GPT's wpe, BERT's position_embeddings), else the default."""
    limit = DEFAULT_SEQ
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding) and module is not tokens and ("pos" in name or "wpe" in name):
            limit = min(limit, module.num_embeddings)
    return [limit] + ([8] if limit > 8 else [])


def _batch_first(model: nn.Module, layout: str | None) -> bool:
    """--layout wins; else the first recurrent layer's batch_first flag; no recurrent layer: batch first."""
    if layout is not None:
        return layout == "batch-first"
    rnn = next((m for m in model.modules() if isinstance(m, nn.RNNBase)), None)
    return bool(rnn.batch_first) if rnn is not None else True


def extra_forward_args(model: nn.Module, given: int) -> tuple[str, ...]:
    """Required positional forward parameters beyond the `given` inputs (an RNN LM's `hidden`)."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return ()
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    missing = [p for p in positional[given:] if p.default is inspect.Parameter.empty]
    has_init_hidden = callable(getattr(model, "init_hidden", None))
    return tuple("init_hidden" if has_init_hidden and i == 0 else "none" for i, _ in enumerate(missing))


def describe_extra_args(plan: InputPlan) -> tuple[str, ...]:
    return tuple(
        f"model.init_hidden({plan.batch_size})" if kind == "init_hidden" else "None"
        for kind in plan.extra_args
    )


def plan_inputs(
    model: nn.Module,
    given: Sequence[InputSpec],
    builtin_defaults: Sequence[str],
    batch_size: int | None,
    layout: str | None,
) -> InputPlan:
    if given:
        size = (
            given[0].shape[0] if _batch_first(model, layout) or len(given[0].shape) < 2 else given[0].shape[1]
        )
        extra = extra_forward_args(model, len(given))
        return InputPlan(specs=tuple(given), origin="--input", extra_args=extra, batch_size=size)
    if builtin_defaults:
        specs = tuple(parse_input(s) for s in builtin_defaults)
        size = (
            specs[0].shape[0] if _batch_first(model, layout) or len(specs[0].shape) < 2 else specs[0].shape[1]
        )
        return InputPlan(specs=specs, origin="builtin", batch_size=size)
    return infer_inputs(model, batch_size, layout)
