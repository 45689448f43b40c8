"""What a config string may call: the rule that keeps `target: subprocess:getoutput` from running.

A TARGET (from the command line, `[tool.gradcheck]` or gradcheck.yaml) names code to run. It may
call, before anything else is checked:

1. any `nn.Module` subclass, and any dataclass outside the standard library (its `__init__` is
   generated: it stores fields, as config objects do);
2. a function or class defined in the user's project: the model file's folder tree (up to its
   nearest ancestor that is not a package), or the package of `pkg.module:NAME` when it is not an
   installed (site-packages) package;
3. for an installed package named by `pkg.module:NAME`: a class of that package, or a function of
   it annotated to return an nn.Module (torchvision.models:resnet18 is `-> ResNet`).

Nothing from the standard library or builtins is ever called (a standard-library module cannot be
a TARGET at all), and neither a module nor a standard-library callable (function or class, plain
builtin types such as int excepted) can be passed as a value.
`functools.partial` is looked through. What a call returns is checked by the caller: an nn.Module,
or exit 2 before the analysis.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from gradcheck_cli.records.errors import TargetError

_INSTALLED = ("site-packages", "dist-packages")
RULE_HINT = (
    "a TARGET may call nn.Module classes, functions and classes defined in your project, and "
    "functions of an installed package annotated to return an nn.Module; never the standard library. "
    "To build a model any other way, do it in a build_model() in your own model file"
)


@dataclass(frozen=True, slots=True)
class Project:
    """Where the user's own code lives, for one TARGET."""

    module_name: str
    """The target module's name in sys.modules."""
    root: Path | None
    """The project folder (None: an installed package, nothing of it is the user's project)."""
    package: str | None
    """Top-level package of an installed `pkg.module:NAME` (its classes may be called)."""


def is_stdlib(module_name: str) -> bool:
    top = module_name.partition(".")[0]
    return top in sys.stdlib_module_names or top in ("builtins", "__main__")


def refuse_stdlib_target(dotted: str) -> None:
    """`os:system`, `subprocess:getoutput`: refused before the module is even imported."""
    if is_stdlib(dotted):
        raise TargetError(
            f"{dotted!r} is a standard-library module, not a model",
            "name your model's module, e.g. mypkg.models:Net or model.py:Net; " + RULE_HINT,
        )


def project_of(module: ModuleType, root: Path | None) -> Project:
    """The project of a model file (its package root) or of an imported module."""
    if root is None:
        file = getattr(module, "__file__", None)
        installed = file is None or any(part in _INSTALLED for part in Path(file).parts)
        if not installed:
            from gradcheck_cli.load.importing import package_root

            root = package_root(Path(file).resolve().parent)  # type: ignore[arg-type]
        package = module.__name__.partition(".")[0] if installed else None
        return Project(module_name=module.__name__, root=root, package=package)
    return Project(module_name=module.__name__, root=root.resolve(), package=None)


def refuse_call(obj: Any, project: Project) -> str | None:
    """Why `obj` may not be called from a config string; None when it may."""
    target = _unwrap(obj)
    if _is_module_class(target):
        return None
    home = _home_module(target)
    if home is None or is_stdlib(home):
        return "from the standard library or builtins"
    if _in_project(home, project) or _is_dataclass_type(target):
        return None  # a dataclass's __init__ is generated: it stores fields (config objects)
    same_package = project.package is not None and home.partition(".")[0] == project.package
    if same_package and (inspect.isclass(target) or _returns_module(target)):
        return None
    return f"from {home}: outside your project, not an nn.Module class nor annotated to return one"


def refuse_value(obj: Any) -> str | None:
    """Why `obj` may not be handed to a constructor; None when it may."""
    if inspect.ismodule(obj):
        return f"passing the module {obj.__name__!r}"
    target = _unwrap(obj)
    if not callable(target) or (inspect.isclass(target) and target.__module__ == "builtins"):
        return None  # data, or a plain type such as int or float
    home = _home_module(target)
    if home is None or is_stdlib(home):
        return f"passing {_describe(obj)} (from the standard library)"
    return None


def _unwrap(obj: Any) -> Any:
    while isinstance(obj, functools.partial):
        obj = obj.func
    return inspect.unwrap(obj) if inspect.isfunction(obj) else obj


def _home_module(obj: Any) -> str | None:
    name = getattr(obj, "__module__", None)
    if isinstance(name, str):
        return name
    owner = getattr(obj, "__self__", None)  # a bound method of a builtin object
    return None if owner is None else getattr(type(owner), "__module__", None)


def _in_project(home: str, project: Project) -> bool:
    if project.root is None or is_stdlib(home):
        return False  # nothing of an installed package is the user's own code
    if home == project.module_name:
        return True
    file = getattr(sys.modules.get(home), "__file__", None)
    if not file:
        return False
    path = Path(file).resolve()
    if any(part in _INSTALLED for part in path.parts):
        return False
    return path.is_relative_to(project.root)


def _is_dataclass_type(obj: Any) -> bool:
    return inspect.isclass(obj) and dataclasses.is_dataclass(obj)


def _returns_module(func: Any) -> bool:
    try:
        returned = typing.get_type_hints(func).get("return")
    except Exception:  # unresolvable annotations: not a declared model factory
        return False
    return _is_module_class(returned)


def _is_module_class(obj: Any) -> bool:
    from torch import nn  # the model's own import has loaded torch by now

    return inspect.isclass(obj) and issubclass(obj, nn.Module)


def _describe(obj: Any) -> str:
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or type(obj).__name__
    return str(name)
