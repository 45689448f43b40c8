"""The inputs stage: put the model on its device and dtype and build the sample batches (given,
from sample_batch(), from --input, or searched for), with labels and forward arguments added.

Returns a frozen `Prepared` record whose BatchSource makes more batches on demand, so the later
stages never call back here.
"""

from __future__ import annotations

import torch
from torch import nn

from gradcheck_cli.config.analyze_config import AnalyzeConfig
from gradcheck_cli.load.target import LoadedModel, redirect_stdout_to_stderr
from gradcheck_cli.measure.batch_source import BatchSource
from gradcheck_cli.measure.batches import Batch
from gradcheck_cli.measure.device import autocast, model_dtype, resolve_device
from gradcheck_cli.measure.input_search import search_inputs
from gradcheck_cli.measure.inputs import InputPlan, plan_inputs
from gradcheck_cli.measure.passes import Prepared, Progress, hook_name
from gradcheck_cli.records.errors import TargetError

GIVEN = "passed to analyze()"
"""The origin of batches handed over as they are (the Python API's `inputs=`)."""


def prepare(
    config: AnalyzeConfig,
    loaded: LoadedModel,
    given: list[Batch] | None = None,
    progress: Progress | None = None,
) -> Prepared:
    """The model on its device and dtype, and `config.batches` finished batches (or `given` ones)."""
    _require_trainable(loaded.module)
    device = pick_device(loaded.module, config.device)
    loaded.module.to(device=device, dtype=model_dtype(config.dtype))
    source = _source(config, loaded, device, given is not None)
    batches = source.finish(given) if given is not None else source.make(config.batches, config.seed)
    return Prepared(
        config=config,
        loaded=loaded,
        device=device,
        batches=tuple(batches),
        plan=source.plan,
        source=source,
        progress=progress,
    )


def _source(config: AnalyzeConfig, loaded: LoadedModel, device: str, given: bool) -> BatchSource:
    """Batches handed over, from sample_batch() (no --input), or from an input plan."""
    model = loaded.module
    if given:
        plan = InputPlan(specs=(), origin=GIVEN)
        return BatchSource(config=config, model=model, plan=plan, device=device, repeatable=False)
    if loaded.sample_batch is not None and not config.inputs:
        hook = hook_name(loaded.sample_batch)
        from_api = loaded.hooks_from == "analyze()"
        where = "passed to analyze()" if from_api else f"in {loaded.hooks_from}"
        plan = InputPlan(specs=(), origin=f"{hook} {where}")
        return BatchSource(
            config=config,
            model=model,
            plan=plan,
            device=device,
            hook=loaded.sample_batch,
            repeatable=not from_api,
        )
    return BatchSource(config=config, model=model, plan=_plan(config, loaded, device), device=device)


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


def _plan(config: AnalyzeConfig, loaded: LoadedModel, device: str) -> InputPlan:
    """--input or a builtin's inputs as given; else search by trying forward passes on candidate inputs."""
    model = loaded.module
    if config.inputs or loaded.default_inputs:
        return plan_inputs(model, config.inputs, loaded.default_inputs, config.batch_size, config.layout)

    def attempt(plan: InputPlan) -> Exception | None:
        batch = BatchSource(config=config, model=model, plan=plan, device=device).make(1, config.seed)[0]
        try:
            with torch.no_grad(), redirect_stdout_to_stderr(), autocast(device, config.dtype):
                model(*batch.args, **batch.kwargs)
        except Exception as exc:  # the model rejected this input: try the next candidate
            return exc
        return None

    return search_inputs(model, config.batch_size, config.layout, attempt)


def pick_device(model: nn.Module, requested: str) -> str:
    """A model already on an accelerator stays there unless --device says otherwise."""
    current = next((p.device for p in model.parameters()), torch.device("cpu"))
    if requested == "auto" and current.type != "cpu":
        return str(current)
    return resolve_device(requested)
