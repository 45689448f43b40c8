"""The input search: when nothing says what the model takes, try candidate inputs for its first
layer (spatial sizes, sequence lengths) by running forward passes, and keep the first that runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from gradcheck_cli.config.specs import InputSpec
from gradcheck_cli.measure.forward_error import describe_failure
from gradcheck_cli.measure.inputs import (
    DEFAULT_BATCH,
    InputPlan,
    candidate_specs,
    no_revealing_layer,
    plan_for_layer,
    revealing_modules,
)
from gradcheck_cli.records.errors import InputError

Attempt = Callable[["InputPlan"], Exception | None]
"""Run one forward on a plan's inputs; the exception it raised, or None when it ran."""


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
        raise no_revealing_layer(model)
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
        plan = plan_for_layer(model, name, module, spec, size, note)
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
