"""Self-consistency: are gradcheck's rules, its pipeline and torch's hook entry points still the ones
the worker started with, once the user's code has run?

The worker takes a `Snapshot` after gradcheck and torch are imported and before the user's module
is, and compares it at every stage change and once more before a report is sent. A model file that
replaces a rule, the pipeline's `diagnose`, `Tensor.register_hook` (to feed fake gradients, or to
make it a no-op) is caught: the target ends with exit 2 naming what changed.

What this cannot catch, and the README says so: code that patches this check itself, or that
changes what a function does without replacing it (its `__code__` is compared, its closure cells
and the C code underneath are not). The user's code runs in this process by design.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from types import FunctionType, ModuleType
from typing import Any

from gradcheck_cli.records.errors import GradcheckError

_TORCH_ENTRY_POINTS = {
    "torch.Tensor": (
        "register_hook", "backward", "retain_grad", "register_post_accumulate_grad_hook", "norm",
        "detach", "requires_grad_",
    ),
    "torch.nn.Module": (
        "register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
        "register_full_backward_pre_hook", "register_backward_hook", "__call__", "_call_impl",
        "named_modules", "named_parameters", "parameters", "zero_grad",
    ),
    "torch.autograd": ("backward", "grad"),
    "torch.linalg": ("vector_norm", "norm"),
    "torch": ("isfinite", "norm"),
}  # fmt: skip
_GLOBAL_HOOKS = (
    "_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
    "_global_backward_pre_hooks", "_global_module_registration_hooks",
)  # fmt: skip
"""torch.nn.modules.module's process-wide hooks: one added by the user's code runs inside every
module call, gradcheck's measurements included."""


class TamperedError(GradcheckError):
    """Something gradcheck relies on was replaced while the user's code ran."""


@dataclass(frozen=True, slots=True)
class _Entry:
    label: str
    owner: Any
    """A module, a class or a registry: where `attr` is looked up again at each check."""
    attr: str
    obj: Any
    """The object found at the snapshot (compared by identity: an equal replacement still differs)."""
    code: Any

    def changed(self) -> bool:
        now = _lookup(self.owner, self.attr)
        return now is not self.obj or getattr(now, "__code__", None) is not self.code


@dataclass(frozen=True, slots=True)
class Snapshot:
    entries: tuple[_Entry, ...]
    rule_ids: tuple[str, ...]
    global_hooks: tuple[tuple[Any, ...], ...]

    @classmethod
    def take(cls) -> Snapshot:
        entries = tuple(_Entry(label, owner, attr, obj, getattr(obj, "__code__", None))
                        for label, owner, attr, obj in _entries())  # fmt: skip
        return cls(entries, _rule_ids(), _global_hooks())

    def check(self, when: str) -> None:
        """Raise TamperedError naming every entry that changed since the snapshot."""
        changed = ["the rule registry"] if _rule_ids() != self.rule_ids else []
        if _global_hooks() != self.global_hooks:
            changed.append("torch's global module hooks")
        changed += dict.fromkeys(entry.label for entry in self.entries if entry.changed())
        if changed:
            shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
            raise TamperedError(
                f"gradcheck's own code or torch's hooks were replaced {when}: {shown} changed",
                "the model's code patched what gradcheck measures with, so nothing it measured can be "
                "trusted; remove the patching (monkeypatching torch or gradcheck) from the model file",
            )


_GONE = object()


def _lookup(owner: Any, attr: str) -> Any:
    if isinstance(owner, dict):
        return owner.get(attr, _GONE)
    if isinstance(owner, (ModuleType, type)) and not attr.startswith("__"):
        return vars(owner).get(attr, _GONE) if isinstance(owner, ModuleType) else getattr(owner, attr, _GONE)
    return getattr(owner, attr, _GONE)


def _entries() -> Iterator[tuple[str, Any, str, Any]]:
    for name, module in list(sys.modules.items()):
        if name.startswith("gradcheck_cli") and isinstance(module, ModuleType):
            for attr, value in list(vars(module).items()):
                home = getattr(value, "__module__", None) or ""
                if isinstance(value, (FunctionType, type)) and home.startswith("gradcheck_cli"):
                    yield f"{name}.{attr}", module, attr, value
                    if isinstance(value, type) and home == name:
                        yield from _class_entries(f"{name}.{attr}", value)
    rules = sys.modules.get("gradcheck_cli.judge.rules.base")
    if rules is not None:
        registry = rules.registry()
        for rule_id, spec in list(registry.items()):
            yield f"the rule {rule_id}", registry, rule_id, spec
            yield f"the rule {rule_id}", spec, "check", spec.check
    yield from _torch_entries()


def _class_entries(qualified: str, cls: type) -> Iterator[tuple[str, Any, str, Any]]:
    for attr, value in list(vars(cls).items()):
        if isinstance(value, FunctionType):
            yield f"{qualified}.{attr}", cls, attr, value


def _rule_ids() -> tuple[str, ...]:
    rules = sys.modules.get("gradcheck_cli.judge.rules.base")
    return tuple(rules.registry()) if rules is not None else ()


def _global_hooks() -> tuple[tuple[Any, ...], ...]:
    hooks = sys.modules.get("torch.nn.modules.module")
    return tuple(tuple(getattr(hooks, attr, None) or ()) for attr in _GLOBAL_HOOKS)


def _torch_entries() -> Iterator[tuple[str, Any, str, Any]]:
    if "torch" not in sys.modules:
        return
    import torch

    owners = {"torch.Tensor": torch.Tensor, "torch.nn.Module": torch.nn.Module,
              "torch.autograd": torch.autograd, "torch.linalg": torch.linalg, "torch": torch}  # fmt: skip
    for owner_name, names in _TORCH_ENTRY_POINTS.items():
        owner = owners[owner_name]
        for attr in names:
            yield f"{owner_name}.{attr}", owner, attr, _lookup(owner, attr)
