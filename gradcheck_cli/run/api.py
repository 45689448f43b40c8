"""The Python API: `gradcheck_cli.analyze(model, ...)`, the same analysis and report as the CLI."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from gradcheck_cli.config.analyze_config import AnalyzeConfig
from gradcheck_cli.config.specs import InputSpec, TargetRef, parse_input
from gradcheck_cli.load.source import source_of
from gradcheck_cli.load.target import LoadedModel
from gradcheck_cli.measure import distributed, model_state
from gradcheck_cli.measure.batches import Batch, normalize_batch
from gradcheck_cli.measure.device import model_dtype
from gradcheck_cli.measure.preparation import pick_device
from gradcheck_cli.records.errors import InputError
from gradcheck_cli.records.report import Report, exit_code
from gradcheck_cli.render import get_renderer
from gradcheck_cli.render.json import to_document
from gradcheck_cli.run.api_guards import (
    ONE_AT_A_TIME,
    check_arguments,
    check_model,
    gradients_on,
    usable,
)
from gradcheck_cli.run.pipeline import analyze_loaded


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalysisReport(Report):
    """The Report every renderer reads, with the conveniences a Python caller wants."""

    def to_dict(self) -> dict[str, Any]:
        """The contract's gradcheck.report/1 document as plain Python (NaN and infinity as None)."""
        return to_document(self)

    def to_json(self, indent: int | None = 2) -> str:
        """The contract's gradcheck.report/1 document, as `--format json` writes it."""
        return json.dumps(to_document(self), indent=indent, allow_nan=False)

    def render(self, format: str = "rich", width: int = 100) -> str:
        """The report as text in one of the CLI's formats (rich, json, ...)."""
        return get_renderer(format, width=width).render(self)

    notes: tuple[str, ...] = ()
    """What analyze() did beyond the CLI's analysis, e.g. that it turned gradients on for its own
    passes when called inside torch.no_grad() or torch.inference_mode()."""

    def exit_code(self, fail_on: str = "error") -> int:
        """What `gradcheck analyze --fail-on LEVEL` would exit with: 0 or 1."""
        return exit_code(self, fail_on)


def analyze(
    model: nn.Module,
    inputs: Any = None,
    loss_fn: Callable[..., Any] | None = None,
    device: str | None = None,
    batches: int = 3,
    *,
    loss: str = "auto",
    dtype: str = "float32",
    steps: int = 0,
    seed: int = 0,
    thresholds: Mapping[str, Mapping[str, float]] | None = None,
    name: str | None = None,
    split_across_ranks: bool = False,
) -> AnalysisReport:
    """Run forward and backward passes on `model` and report how gradients flow through it.

    inputs: one batch as a training loop sees it (a tensor, an `(inputs, target)` tuple, a dict
    of keyword arguments), a list of such batches, an iterable of batches (a DataLoader: the
    first `batches` are used), a function returning one batch, an input spec string such as
    "32x784" or "int:4x64:1000" (or a list of them), or None to infer one from the first layer.
    loss_fn: `loss_fn(output, target)` or `loss_fn(output)`; default: the CLI's `--loss auto`.
    device: None keeps the model where it is; otherwise as `--device`.
    The model comes back exactly as it was (parameters, buffers, `.grad`, each module's
    train/eval flag, requires_grad, hooks, and the global random states), also when the
    analysis raises: `steps` > 0, or a device or dtype other than the model's, run on a copy.
    A DDP wrapper is looked through. Inside a torch.distributed process group the analysis
    runs in the calling process alone, unless `split_across_ranks=True`: then every rank must
    call analyze() with the same batches; each measures its share and all get the combined report.
    batches must be 1 to 1000 and steps 0 to 10000 (else a ValueError naming the argument).
    Inside torch.no_grad() or torch.inference_mode() gradients are enabled for the analysis's own
    passes only, and `report.notes` says so. One analysis runs at a time per process: a call from
    another thread waits for the running one (a lock); a call from inside an analysis raises.
    """
    check_arguments(batches=batches, steps=steps, seed=seed)
    with ONE_AT_A_TIME, gradients_on() as note:
        report = _analyze(
            model,
            inputs,
            loss_fn,
            device,
            batches,
            loss,
            dtype,
            steps,
            seed,
            thresholds,
            name,
            split_across_ranks,
        )
    fields_of = {f.name: getattr(report, f.name) for f in fields(report)}
    return AnalysisReport(**fields_of, notes=(note,) if note else ())


def _analyze(
    model: nn.Module,
    inputs: Any,
    loss_fn: Callable[..., Any] | None,
    device: str | None,
    batches: int,
    loss: str,
    dtype: str,
    steps: int,
    seed: int,
    thresholds: Mapping[str, Mapping[str, float]] | None,
    name: str | None,
    split_across_ranks: bool,
) -> Report:
    model = distributed.unwrap(model)
    check_model(model, device)
    config = AnalyzeConfig(
        target=TargetRef(raw=name or type(model).__name__, kind="module", location="<python>"),
        inputs=_specs(inputs),
        batches=batches,
        device=device or _current_device(model),
        dtype=dtype,
        loss=loss,
        steps=steps,
        seed=seed,
        thresholds=dict(thresholds or {}),
    )
    with model_state.preserved(model):
        torch.manual_seed(seed)
        loaded = LoadedModel(
            module=_subject(model, config),
            found_by="explicit",
            source=source_of(type(model)),
            loss_fn=loss_fn,
            hooks_from="analyze()",
        )
        if callable(inputs) and not isinstance(inputs, nn.Module):
            loaded.sample_batch = inputs
        given = _given_batches(inputs, batches)
        with contextlib.nullcontext() if split_across_ranks else distributed.local_only():
            return analyze_loaded(config, loaded, batches=given)


def _subject(model: nn.Module, config: AnalyzeConfig) -> nn.Module:
    """The model itself, or a deep copy when the analysis would train it or change its dtype or device."""
    device = pick_device(model, config.device)
    if model_state.needs_copy(model, device, model_dtype(config.dtype), config.steps):
        return model_state.working_copy(model)
    return model


def _current_device(model: nn.Module) -> str:
    param = next(model.parameters(), None)
    return str(param.device) if param is not None else "cpu"


def _specs(inputs: Any) -> tuple[InputSpec, ...]:
    if isinstance(inputs, str):
        return (parse_input(inputs),)
    if isinstance(inputs, list) and inputs and all(isinstance(i, str) for i in inputs):
        return tuple(parse_input(i) for i in inputs)
    return ()


def _given_batches(inputs: Any, count: int) -> list[Batch] | None:
    """Batches the caller handed over; None where the pipeline builds them (spec, function, inferred)."""
    if inputs is None or callable(inputs) or _specs(inputs):
        return None
    if isinstance(inputs, (torch.Tensor, tuple, dict)):
        return [usable(normalize_batch(inputs))]
    if isinstance(inputs, list):
        return [usable(normalize_batch(b)) for b in _non_empty(inputs)]
    if isinstance(inputs, Iterable):
        taken: list[Batch] = []
        for raw in inputs:
            if len(taken) == count:
                break
            taken.append(usable(normalize_batch(raw)))
        return _non_empty(taken)
    raise InputError(
        f"analyze(inputs=...) got a {type(inputs).__name__}",
        "pass a tensor, an (inputs, target) tuple, a dict, a list or iterable of batches, "
        "a function returning a batch, or a shape such as '32x784'",
    )


def _non_empty(batches: list[Any]) -> list[Any]:
    if not batches:
        raise InputError("analyze(inputs=...) got no batches", "pass at least one batch")
    return batches
