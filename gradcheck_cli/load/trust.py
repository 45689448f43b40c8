"""What a config string may call: an allowlist, so that `target: somepkg:helper` never runs.

A TARGET (from the command line, `[tool.gradcheck]` or gradcheck.yaml) names code to run. It may
import, from an installed package, only the model libraries below; any other installed package
(and the whole standard library) is refused before it is imported. It may call:

1. an `nn.Module` subclass (constructing a layer or a model);
2. a function or class defined in the user's project: the model file's folder tree (up to its
   nearest ancestor that is not a package), or a `pkg.module:NAME` that is not installed
   (site-packages);
3. a config object: a dataclass whose `__init__` dataclasses generated (it stores fields; no
   `__post_init__` from outside the project), or a Hugging Face `PretrainedConfig` class;
4. a model factory of the known model libraries: `timm.create_model`, the `torchvision.models`
   builders and `torchvision.models.get_model`, `from_config` of a `transformers` class
   (`AutoModel*.from_config`, `BertModel.from_config`).

Calls to installed code never download or load weights: `pretrained=True`, `weights=...`,
`checkpoint_path=`, `trust_remote_code=` and the like are refused (--weights loads a checkpoint).
Nothing from the standard library or builtins is ever called, and neither a module nor a
standard-library callable (function or class, plain builtin types such as int excepted) can be
passed as a value. `functools.partial` is looked through. What a call returns is checked by the
caller: an nn.Module, or exit 2 before the analysis.

Everything else (numpy.memmap, torch.package.PackageExporter, a summary writer, a helper that
exec()s a string) is refused with a hint to build the model in a small model file instead.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import importlib.util
import inspect
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from gradcheck_cli.load.model_libraries import MODEL_LIBRARIES, is_model_factory, is_transformers_config
from gradcheck_cli.records.errors import TargetError

_INSTALLED = ("site-packages", "dist-packages")
_LOADING_KEYWORDS = ("pretrained", "weights", "checkpoint_path", "pretrained_cfg_overlay", "trust_remote_code",
                     "cache_dir", "pretrained_model_name_or_path", "model_dir")  # fmt: skip
"""Keywords of the model factories that download, read or cache weights: refused from a config."""
MODEL_FILE_HINT = (
    "to build a model any other way, write a small model file, e.g. model.py with "
    "`def build_model(): return make_net(...)`, and run `gradcheck analyze model.py`"
)
RULE_HINT = (
    "a TARGET may call nn.Module classes, functions and classes defined in your project, config "
    "classes (dataclasses, transformers configs) and the known model factories (timm.create_model, "
    "torchvision.models builders and get_model, transformers from_config); never the standard "
    "library. " + MODEL_FILE_HINT[0].upper() + MODEL_FILE_HINT[1:]
)


@dataclass(frozen=True, slots=True)
class Project:
    """Where the user's own code lives, for one TARGET."""

    module_name: str
    """The target module's name in sys.modules."""
    root: Path | None
    """The project folder (None: an installed package, nothing of it is the user's project)."""
    package: str | None = None
    """Top-level package of an installed `pkg.module:NAME` (a model library)."""


def is_stdlib(module_name: str) -> bool:
    top = module_name.partition(".")[0]
    return top in sys.stdlib_module_names or top in ("builtins", "__main__")


def refuse_module_target(dotted: str) -> None:
    """`os:system`, `somepkg.tools:run`: refused before the module is even imported."""
    if is_stdlib(dotted):
        raise TargetError(
            f"{dotted!r} is a standard-library module, not a model",
            "name your model's module, e.g. mypkg.models:Net or model.py:Net; " + RULE_HINT,
        )
    if _installed_top(dotted) and not _is_model_library(dotted):
        raise TargetError(
            f"{dotted!r} is from an installed package, outside your project: a TARGET imports from "
            f"installed packages only the model libraries ({', '.join(MODEL_LIBRARIES)})",
            MODEL_FILE_HINT,
        )


def _is_model_library(dotted: str) -> bool:
    return any(dotted == lib or dotted.startswith(lib + ".") for lib in MODEL_LIBRARIES)


def _installed_top(dotted: str) -> bool:
    """Whether the top-level package of `dotted` lives in site-packages (found without running it)."""
    top = dotted.partition(".")[0]
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # as the import itself will: a package in the working folder is yours
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False  # not found: the import says so
    places = [spec.origin or "", *(spec.submodule_search_locations or ())]
    return any(part in _INSTALLED for place in places for part in Path(place).parts)


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
    if _in_project(home, project) or _is_config_class(target) or is_model_factory(obj, target, home):
        return None
    return (
        f"from {home}: outside your project, and not an nn.Module class, a config class or a known "
        "model factory"
    )


def refuse_arguments(obj: Any, kwargs: dict[str, Any], project: Project) -> str | None:
    """Why calling `obj` with `kwargs` from a config string is refused (weights downloaded or read)."""
    home = _home_module(_unwrap(obj))
    if home is None or _in_project(home, project):
        return None
    for key in _LOADING_KEYWORDS:
        if kwargs.get(key) not in (None, False):
            return f"{key}={kwargs[key]!r}: a config string never downloads or reads weights (use --weights FILE)"
    return None


def refuse_value(obj: Any, project: Project) -> str | None:
    """Why `obj` may not be handed to a constructor; None when it may.

    Data passes (numbers, strings, dtypes, instances such as `nn.ReLU()`), and so do plain builtin
    types (int, float) and the functions of torch.nn.functional. A module never does; any other
    class or function only when the config string could call it itself (refuse_call): the model's
    code calls what it is given."""
    if inspect.ismodule(obj):
        return f"passing the module {obj.__name__!r}"
    target = _unwrap(obj)
    if not (inspect.isclass(target) or inspect.isroutine(target)) or not callable(target):
        return None  # data, or an instance (an nn.Module, a config object)
    if inspect.isclass(target) and target.__module__ == "builtins":
        return None  # a plain type such as int or float
    home = _home_module(target)
    if home is None or is_stdlib(home):
        return f"passing {_describe(obj)} (from the standard library)"
    if _is_functional(target):
        return None
    reason = refuse_call(obj, project)
    return None if reason is None else f"passing {_describe(obj)} ({reason})"


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


def _is_config_class(obj: Any) -> bool:
    """A dataclass that only stores its fields, or a transformers config class."""
    if not inspect.isclass(obj):
        return False
    if is_transformers_config(obj):
        return True
    if not dataclasses.is_dataclass(obj) or hasattr(obj, "__post_init__"):
        return False
    if type(obj) not in (type, abc.ABCMeta) or obj.__new__ is not object.__new__:
        return False  # a metaclass __call__ or a __new__ runs the class's own code
    generated = all(_generated(getattr(obj, name, None)) for name in ("__init__", "__setattr__"))
    return generated and all(_stored(obj, field) for field in dataclasses.fields(obj))


def _generated(method: Any) -> bool:
    """object's own slot, or a method dataclasses wrote (its code comes from a string)."""
    code = getattr(method, "__code__", None)
    return (
        code is None
        and method in (object.__init__, object.__setattr__)
        or (code is not None and code.co_filename == "<string>")
    )


def _stored(owner: type, field: dataclasses.Field[Any]) -> bool:
    """A field whose default is stored as it is: a default factory may only be a plain container
    type (list, dict, ...) or another config class."""
    if hasattr(type(slot := inspect.getattr_static(owner, field.name, None)), "__set__"):
        return isinstance(slot, types.MemberDescriptorType)  # a __slots__ field; any other runs code
    factory = field.default_factory
    if factory is dataclasses.MISSING:
        return True
    return (inspect.isclass(factory) and factory.__module__ == "builtins") or _is_config_class(factory)


def _is_functional(obj: Any) -> bool:
    """A public function of torch.nn.functional (F.gelu, F.relu): computes, never writes."""
    from torch.nn import functional

    name = getattr(obj, "__name__", "")
    return not name.startswith("_") and getattr(functional, name, None) is obj


def _is_module_class(obj: Any) -> bool:
    from torch import nn  # the model's own import has loaded torch by now

    return inspect.isclass(obj) and issubclass(obj, nn.Module)


def _describe(obj: Any) -> str:
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or type(obj).__name__
    return str(name)
