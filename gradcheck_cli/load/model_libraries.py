"""The model libraries a TARGET string may reach in installed packages, and their factories.

An allowlist by name, never by type: a function of an installed package is not callable from a
config string because it is annotated to return an nn.Module (some such helpers exec() a string
argument). What may be called is, exactly:

- `timm.create_model`;
- a `torchvision.models` builder registered in torchvision's own model registry (what
  `torchvision.models.list_models()` lists: `resnet18`, `vit_b_16`, ...) and
  `torchvision.models.get_model`;
- `from_config` of a `transformers` class (`AutoModel.from_config`, `AutoModelForCausalLM.from_config`,
  `BertModel.from_config`); `transformers` config classes (subclasses of `PretrainedConfig`) and
  model classes (nn.Module subclasses) are constructed as any config class or nn.Module is.

Nothing here imports a library: a library the TARGET has not imported is not there to be called.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

MODEL_LIBRARIES = ("torch.nn", "torchvision.models", "timm", "transformers")
"""The installed modules (and their submodules) a `pkg.module:NAME` TARGET may import."""
FACTORIES = (
    "timm.create_model",
    "torchvision.models builders (torchvision.models.list_models()) and torchvision.models.get_model",
    "transformers: from_config of a model class or AutoModel* class",
)
_PRETRAINED_CONFIG = "transformers.configuration_utils.PretrainedConfig"


def is_model_factory(obj: Any, target: Any, home: str) -> bool:
    """`target` (obj looked through functools.partial) is one of the FACTORIES."""
    timm = sys.modules.get("timm")
    if timm is not None and target is getattr(timm, "create_model", None):
        return True
    if home == "torchvision.models" or home.startswith("torchvision.models."):
        return _is_torchvision_builder(target)
    owner = getattr(obj, "__self__", None)
    return (
        inspect.ismethod(obj)
        and obj.__name__ == "from_config"
        and inspect.isclass(owner)
        and owner.__module__.partition(".")[0] == "transformers"
    )


def _is_torchvision_builder(target: Any) -> bool:
    """A builder in torchvision's registry (`register_model`), or `get_model`, which calls one."""
    api = sys.modules.get("torchvision.models._api")
    if api is None or not inspect.isfunction(target):
        return False
    builders = getattr(api, "BUILTIN_MODELS", None)
    if target is getattr(api, "get_model", None):
        return True
    return isinstance(builders, dict) and any(target is builder for builder in builders.values())


def is_transformers_config(cls: type) -> bool:
    """A subclass of transformers' PretrainedConfig (found by its name: nothing is imported)."""
    return any(f"{c.__module__}.{c.__qualname__}" == _PRETRAINED_CONFIG for c in cls.__mro__)
