"""Build the sample batches: from --input, the file's sample_batch(), or the model itself."""

from __future__ import annotations

import contextlib
import inspect
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gradcheck_cli.config.specs import InputSpec, parse_input
from gradcheck_cli.measure.forward_error import describe_failure
from gradcheck_cli.records.errors import InputError

DEFAULT_BATCH = 16
DEFAULT_SEQ = 32
EXPLICIT_KEYS = {"args", "kwargs", "target"}


@dataclass(slots=True, kw_only=True)
class Batch:
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    target: Any = None


STREAMS = {"targets": 1, "labels": 2}
"""Random draws besides the inputs, each from its own generator: a loss's random targets never
repeat the inputs (for a model whose output equals its input that would make every gradient 0)."""


def stream(seed: int, purpose: str, index: int = 0) -> torch.Generator:
    """The generator for `purpose` ('targets', 'labels') on batch `index`, independent of the inputs'.

    The inputs draw from a generator seeded with `seed` itself; these seeds are a 64-bit mix of
    (seed, purpose, index) (splitmix64's finaliser), so they never coincide with a small seed.
    """
    value = (seed * 0x9E3779B97F4A7C15 + STREAMS[purpose] * 0xBF58476D1CE4E5B9 + index) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return torch.Generator().manual_seed(value ^ (value >> 31))


_MASK64 = (1 << 64) - 1


def reference_input(batch: Batch) -> torch.Tensor | None:
    """The batch's first float tensor (positional first): what a reconstruction loss gives back."""
    for value in (*batch.args, *batch.kwargs.values()):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value
    return None


def generate(spec: InputSpec, generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    if spec.kind == "int":
        high = int(spec.high or 2)
        return torch.randint(0, high, spec.shape, generator=generator)
    if spec.low is not None and spec.high is not None:
        return spec.low + (spec.high - spec.low) * torch.rand(spec.shape, generator=generator, dtype=dtype)
    return torch.randn(spec.shape, generator=generator, dtype=dtype)


def batches_from_specs(specs: Sequence[InputSpec], count: int, seed: int, dtype: torch.dtype) -> list[Batch]:
    generator = torch.Generator().manual_seed(seed)
    return [Batch(args=tuple(generate(s, generator, dtype) for s in specs)) for _ in range(count)]


def batches_from_hook(hook: Callable[[], Any], count: int, seed: int) -> list[Batch]:
    out = []
    for i in range(count):
        torch.manual_seed(seed + i)
        try:
            with contextlib.redirect_stdout(sys.stderr):  # keep a JSON report on stdout clean
                raw = hook()
        except Exception as exc:
            raise InputError(f"sample_batch() raised {type(exc).__name__}: {exc}") from exc
        out.append(normalize_batch(raw))
    return out


def normalize_batch(raw: Any) -> Batch:
    """A batch as a training loop sees it: tensor, kwargs dict, (inputs, target), or args/kwargs/target."""
    if isinstance(raw, torch.Tensor):
        return Batch(args=(raw,))
    if isinstance(raw, dict):
        if raw and set(raw) <= EXPLICIT_KEYS:
            args = raw.get("args", ())
            return Batch(
                args=tuple(args) if isinstance(args, (tuple, list)) else (args,),
                kwargs=dict(raw.get("kwargs", {})),
                target=raw.get("target"),
            )
        return Batch(args=(), kwargs=dict(raw))
    if isinstance(raw, (tuple, list)) and len(raw) == 2:
        inputs, target = raw
        if isinstance(inputs, dict):
            return Batch(args=(), kwargs=dict(inputs), target=target)
        if isinstance(inputs, (tuple, list)):
            return Batch(args=tuple(inputs), target=target)
        return Batch(args=(inputs,), target=target)
    if isinstance(raw, (tuple, list)):
        return Batch(args=tuple(raw))
    raise InputError(
        f"sample_batch() returned a {type(raw).__name__}",
        "return a tensor, a dict of keyword arguments, (inputs, target), or {'args', 'kwargs', 'target'}",
    )


Attempt = Callable[["InputPlan"], Exception | None]
"""Run one forward on a plan's inputs; the exception it raised, or None when it ran."""

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
        return _plan(model, name, module, specs[0], size, "")
    raise _no_revealing_layer(model)


def _no_revealing_layer(model: nn.Module) -> InputError:
    return InputError(
        f"cannot infer an input for {type(model).__name__}: no Linear, Conv, Embedding or recurrent layer found",
        "pass one with --input, e.g. --input 16x784, or define sample_batch() in the file",
    )


def search_inputs(
    model: nn.Module, batch_size: int | None, layout: str | None, attempt: Attempt
) -> InputPlan:
    """Try inputs for the first layer that runs (forward order), over spatial sizes and sequence lengths.

    Registration order gives the first guess; a forward pre-hook on every revealing module tells
    which one actually ran first, and the search restarts from that one when they differ.
    """
    size = batch_size or DEFAULT_BATCH
    layers = revealing_modules(model)
    if not layers:
        raise _no_revealing_layer(model)
    name, module = layers[0]
    tried: list[tuple[InputPlan, Exception]] = []
    for _ in range(2):
        ran_first, found = _search_one(model, name, module, size, layout, attempt, tried)
        if found is not None:
            return found
        if ran_first is None or ran_first[1] is module:
            break
        name, module = ran_first
    raise _nothing_fits(model, tried)


def _search_one(
    model: nn.Module,
    name: str,
    module: nn.Module,
    size: int,
    layout: str | None,
    attempt: Attempt,
    tried: list[tuple[InputPlan, Exception]],
) -> tuple[tuple[str, nn.Module] | None, InputPlan | None]:
    specs = candidate_specs(model, module, size, layout)
    first_run: tuple[str, nn.Module] | None = None
    for index, spec in enumerate(specs):
        note = _search_note(module, spec, specs, tried) if index else ""
        plan = _plan(model, name, module, spec, size, note)
        with _first_called(model) as seen:
            error = attempt(plan)
        first_run = first_run or (seen[0] if seen else None)
        if error is None:
            return first_run, plan
        tried.append((plan, error))
    return first_run, None


class _first_called:
    """Context manager: which revealing module's forward is called first."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.seen: list[tuple[str, nn.Module]] = []
        self.handles: list[Any] = []

    def __enter__(self) -> list[tuple[str, nn.Module]]:
        for name, module in revealing_modules(self.model):
            self.handles.append(module.register_forward_pre_hook(self._hook(name)))
        return self.seen

    def _hook(self, name: str) -> Callable[..., None]:
        def record(module: nn.Module, args: Any) -> None:
            if not self.seen:
                self.seen.append((name, module))

        return record

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()


def _search_note(module: nn.Module, spec: InputSpec, specs: list[InputSpec], tried: list[Any]) -> str:
    failed = [str(plan.specs[0]) for plan, _ in tried]
    return f"; chose {spec} after {', '.join(failed)} failed" if failed else ""


def _plan(model: nn.Module, name: str, module: nn.Module, spec: InputSpec, size: int, note: str) -> InputPlan:
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


def _nothing_fits(model: nn.Module, tried: list[tuple[InputPlan, Exception]]) -> InputError:
    plan, error = tried[0]
    shapes = ", ".join(str(p.specs[0]) for p, _ in tried)
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    hint = "pass the input shape with --input (e.g. --input 16x3x32x32, --input int:8x128:50257), "
    hint += "or define sample_batch() in the model file"
    if "Double" in first:
        hint = "the model computes in float64: pass --dtype float64; or " + hint
    user, layer = describe_failure(error, model)
    head = f"{user.function} ({user.where}): {user.call} raised" if user else "the model's forward raised"
    return InputError(
        f"{head} {type(error).__name__}: {first}"
        + (f"\n  in {layer}" if layer else "")
        + f"\n  inputs tried ({plan.origin.split(';')[0]}): {shapes}",
        hint,
    )


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
        out.append(Batch(args=batch.args + extras, kwargs=batch.kwargs, target=batch.target))
    return out


def describe_extra_args(plan: InputPlan) -> tuple[str, ...]:
    return tuple(
        f"model.init_hidden({plan.batch_size})" if kind == "init_hidden" else "None"
        for kind in plan.extra_args
    )


def labels_from_spec(spec: InputSpec, seed: int, index: int) -> torch.Tensor:
    """--labels SPEC for batch `index`: integer class labels (or float targets), from the labels stream."""
    return generate(spec, stream(seed, "labels", index), torch.float32)


def labels_for_head(output: Any, batch_size: int) -> InputSpec | None:
    """Labels shaped for the head that consumes them, read off the output of a forward without them.

    (B, C) logits: one class per sample, int:B:C; (B, T, V): one per position, int:BxT:V; (B, 1)
    or (B,): a regression, float:B. None when the output does not say.
    """
    from gradcheck_cli.measure.outputs import split_output

    head = split_output(output).main
    if head is None or not head.tensor.is_floating_point() or head.tensor.dim() == 0:
        return None
    shape = tuple(head.tensor.shape)
    if shape[0] != batch_size:
        return None
    if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        return InputSpec(shape=(batch_size,))
    return InputSpec(shape=shape[:-1], kind="int", low=0, high=shape[-1])


def token_targets(spec: InputSpec, generator: torch.Generator) -> torch.Tensor:
    """Next-token-style targets for --target-arg: integers of the input's shape and range."""
    return torch.randint(0, int(spec.high or 2), spec.shape, generator=generator)


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


def move(value: Any, device: torch.device | str, dtype: torch.dtype | None = None) -> Any:
    """Move tensors inside tuples, lists and dicts; float tensors also take `dtype`."""
    if isinstance(value, torch.Tensor):
        if dtype is not None and value.is_floating_point():
            return value.to(device=device, dtype=dtype)
        return value.to(device)
    if isinstance(value, dict):
        return {k: move(v, device, dtype) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(move(v, device, dtype) for v in value)
    return value


def describe(value: Any) -> str:
    """Shapes of a batch's tensors, for messages: 'float32[16x784]'."""
    if isinstance(value, torch.Tensor):
        return f"{str(value.dtype).removeprefix('torch.')}[{'x'.join(map(str, value.shape))}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {describe(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(describe(v) for v in value) + ")"
    return type(value).__name__
