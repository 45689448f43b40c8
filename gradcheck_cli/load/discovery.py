"""Finding the model in a file by convention: build_model() and friends, a module-level `model`,
else the one nn.Module class it can build; when there is none or several, an error listing the
candidates and how to name one."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from torch import nn

from gradcheck_cli.config.specs import TargetRef
from gradcheck_cli.load.build import (
    LoadedModel,
    autowires,
    call_form,
    construct,
    from_object,
    required_names,
    signature_text,
    source_of,
)
from gradcheck_cli.records.errors import TargetError

FACTORY_NAMES = ("build_model", "get_model", "create_model", "make_model")


BATCH_HOOKS = ("sample_batch", "get_batch")


HOOK_NAMES = (*BATCH_HOOKS, "loss_fn")


@dataclass(frozen=True, slots=True)
class Candidate:
    name: str
    obj: Any
    required: tuple[str, ...]
    """Names of the arguments it needs; empty when it can be called with none."""


def find_candidates(module: ModuleType) -> list[Candidate]:
    """nn.Module classes with parameters of their own and no-argument factory functions, in file order."""
    out = []
    for name, value in vars(module).items():
        if (
            name.startswith("_")
            or name in HOOK_NAMES
            or getattr(value, "__module__", None) != module.__name__
        ):
            continue
        is_class = inspect.isclass(value) and issubclass(value, nn.Module)
        if is_class and value.__init__ is nn.Module.__init__:
            continue  # a NewGELU: no constructor of its own, so no parameters, not a model
        required = required_names(value) if (is_class or inspect.isfunction(value)) else None
        if required is not None and (is_class or not required):
            out.append(Candidate(name, value, required))
    return out


def by_convention(
    module: ModuleType,
    ref: TargetRef,
    init_args: dict[str, Any],
    check_call: Callable[[Any, str], None] | None = None,
) -> LoadedModel:
    """build_model() and friends, a module-level `model`, else the one buildable model class.

    `check_call(factory, name)` raises when a factory may not be called (target.trust's rule:
    `from subprocess import getoutput as build_model` is not the user's code)."""
    for name in FACTORY_NAMES:
        factory = getattr(module, name, None)
        if callable(factory):
            if check_call is not None:
                check_call(factory, name)
            return from_object(factory, name, "build_model", init_args, ref)
    instance = getattr(module, "model", None)
    if isinstance(instance, nn.Module):
        return LoadedModel(module=instance, found_by="model-instance", source=source_of(type(instance)))
    candidates = find_candidates(module)
    built = _buildable_models(
        [c for c in candidates if inspect.isclass(c.obj) and not c.required], init_args, ref
    )
    if not built:
        built = _buildable_models(_single_autowired(candidates), init_args, ref)
    built = _owners(built, candidates)
    if len(built) == 1:
        name, (model, recorded) = next(iter(built.items()))
        source = source_of(getattr(module, name))
        return LoadedModel(module=model, found_by="single-subclass", source=source, init_args=recorded)
    raise _no_single_model(ref, candidates, several=len(built) > 1)


def _single_autowired(candidates: list[Candidate]) -> list[Candidate]:
    """GPT(config) with a defaulted GPTConfig in the file: the one top class whose config can be built."""
    classes = [c for c in candidates if inspect.isclass(c.obj) and c.required and autowires(c.obj)]
    top = [c for c in classes if not _used_by_others(c, candidates)]
    return top if len(top) == 1 else []


def _owners(
    built: dict[str, tuple[nn.Module, dict[str, Any]]], candidates: list[Candidate]
) -> dict[str, tuple[nn.Module, dict[str, Any]]]:
    """Several built models where one holds the others as parts (blocks in an nn.ModuleList, a
    Block() called in its source): the ones that are nobody's part, when that leaves exactly one."""
    if len(built) < 2:
        return built
    parts = {type(m) for model, _ in built.values() for m in list(model.modules())[1:]}
    named = {c.name: c for c in candidates}
    top = {
        name: entry
        for name, entry in built.items()
        if type(entry[0]) not in parts and not (name in named and _used_by_others(named[name], candidates))
    }
    return top if len(top) == 1 else built


def _buildable_models(
    classes: list[Candidate], init_args: dict[str, Any], ref: TargetRef
) -> dict[str, tuple[nn.Module, dict[str, Any]]]:
    """Build each no-argument class; keep those that own parameters."""
    out = {}
    for candidate in classes:
        model, recorded = construct(candidate.obj, candidate.name, init_args, ref)
        if any(True for _ in model.parameters()):
            out[candidate.name] = (model, recorded)
    return out


def _no_single_model(ref: TargetRef, candidates: list[Candidate], several: bool) -> TargetError:
    lines = [f"  {call_form(ref.location, c.name, c.obj):<48} {_describe(c)}" for c in candidates]
    problem = "several models" if several else "no model it can build without arguments"
    listing = "\n".join(lines) if lines else "  (no nn.Module class with parameters, no factory function)"
    usable = _best_example(candidates)
    example = call_form(ref.location, usable.name, usable.obj) if usable else f"{ref.location}:NAME"
    return TargetError(
        f"{ref.location}: found {problem}, and no build_model() or module-level `model`. Candidates:\n{listing}",
        f"name one: gradcheck analyze {example}"
        + ("" if "(" not in example else " (put your values for the CAPITALS)")
        + "; set constructor keyword arguments with --init KEY=VALUE",
    )


def _best_example(candidates: list[Candidate]) -> Candidate | None:
    """A candidate ready to build and used by no other (the top model), else the last one defined."""
    ready = [c for c in candidates if not c.required or autowires(c.obj)]
    top = [c for c in ready if not _used_by_others(c, candidates)]
    pool = top or ready or candidates
    return pool[0] if top else (pool[-1] if pool else None)


def _used_by_others(candidate: Candidate, candidates: list[Candidate]) -> bool:
    """Block is built inside GPT's source: it is a part, not the model."""
    for other in candidates:
        if other is not candidate:
            with contextlib.suppress(OSError, TypeError):
                if f"{candidate.name}(" in inspect.getsource(other.obj):
                    return True
    return False


def _describe(candidate: Candidate) -> str:
    kind = "class" if inspect.isclass(candidate.obj) else "factory function"
    if not candidate.required:
        return f"({kind}, no arguments needed)"
    if autowires(candidate.obj):
        return f"({kind}; its config is built from defaults, --init sets fields)"
    return f"({kind}; needs {', '.join(candidate.required)}: {candidate.name}{signature_text(candidate.obj)})"


def optional_hook(module: ModuleType, names: tuple[str, ...]) -> Callable[..., Any] | None:
    for name in names:
        hook = getattr(module, name, None)
        if callable(hook) and not inspect.isclass(hook):
            return hook
    return None
