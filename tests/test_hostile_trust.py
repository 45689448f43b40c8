"""Config strings are data, by an allowlist: what a TARGET may import and call from installed
packages is a short list of model libraries and factories, and nothing reachable from a config
string runs a command, writes a file or downloads weights.

The installed packages here are our own, written into a `site-packages` folder under tmp_path:
`evilpkg` (a helper annotated to return an nn.Module that exec()s its argument, a class that writes
the file it is given, dataclasses that run code), `arraylib` (a memory-mapped array that truncates
the file it names with mode='w+', a `save`), `boardlib` (a summary writer that creates folders),
and stand-ins for timm, torchvision (its model registry) and transformers (config and model
classes, AutoModel) with the same entry points as the real ones: nothing depends on numpy,
tensorboard or the real model libraries being installed. Each case asserts the exit code or the exception, the message, that no marker file appears
(not even the one `evilpkg` writes when it is imported) and that no file in the project changed.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from gradcheck_cli.config.specs import parse_target
from gradcheck_cli.load.target import load
from gradcheck_cli.records.errors import TargetError

EVILPKG = """
import dataclasses
from pathlib import Path

from torch import nn

Path({imported!r}).write_text("evilpkg was imported")


def make(code: str) -> nn.Module:
    exec(code)
    return nn.Linear(4, 2)


class Writer:
    def __init__(self, path):
        Path(path).write_text("written")


@dataclasses.dataclass
class Settings:
    path: str = "x"

    def __post_init__(self):
        Path(self.path).write_text("written")


def touch():
    Path({mark!r}).write_text("written")
    return []


@dataclasses.dataclass
class Plain:
    width: int = 4
    names: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True, slots=True)
class Frozen:
    width: int = 4


@dataclasses.dataclass
class Factory:
    names: list = dataclasses.field(default_factory=touch)


@dataclasses.dataclass
class Fresh:
    width: int = 4

    def __new__(cls, *args, **kwargs):
        touch()
        return super().__new__(cls)


class Touching:
    def __set__(self, obj, value):
        touch()

    def __get__(self, obj, owner=None):
        return 4


@dataclasses.dataclass
class Described:
    width: int = Touching()
"""
ARRAYLIB = """
from pathlib import Path


class memmap:
    def __init__(self, path, mode="r", shape=None):
        if mode == "w+":
            Path(path).write_bytes(b"")


def save(path, value):
    Path(path).write_text(str(value))
"""
BOARDLIB = """
from pathlib import Path


class SummaryWriter:
    def __init__(self, log_dir="runs"):
        Path(log_dir).mkdir(parents=True, exist_ok=True)
"""
TIMM = """
from pathlib import Path
from torch import nn


def create_model(name, pretrained=False, **options) -> nn.Module:
    if pretrained:
        Path({mark!r}).write_text("downloaded")
    return nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))


def load_checkpoint(model, path) -> nn.Module:
    Path(path).write_text("written")
    return model
"""
TORCHVISION_API = """
from pathlib import Path
from torch import nn

BUILTIN_MODELS = {{}}


def register_model(fn):
    BUILTIN_MODELS[fn.__name__] = fn
    return fn


def get_model(name, **config):
    return BUILTIN_MODELS[name](**config)


@register_model
def tiny_net(*, weights=None, progress=True) -> nn.Module:
    if weights is not None:
        Path({mark!r}).write_text("downloaded")
    return nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))


def save(path) -> nn.Module:
    Path(path).write_text("written")
    return nn.Linear(4, 2)
"""
TORCHVISION = "from ._api import BUILTIN_MODELS, get_model, save, tiny_net\n"
TRANSFORMERS = {
    "__init__.py": "from .configuration_utils import PretrainedConfig, TinyConfig\n"
    "from .modeling_utils import AutoModel, TinyModel\n",
    "configuration_utils.py": """
from pathlib import Path


class PretrainedConfig:
    def __init__(self, **kwargs):
        for key, value in kwargs.items():
            setattr(self, key, value)

    @classmethod
    def from_pretrained(cls, path):
        Path(path).write_text("written")
        return cls()


class TinyConfig(PretrainedConfig):
    def __init__(self, hidden=4, **kwargs):
        super().__init__(**kwargs)
        self.hidden = hidden
""",
    "modeling_utils.py": """
from pathlib import Path
from torch import nn


class TinyModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.fc = nn.Linear(4, config.hidden)

    @classmethod
    def from_config(cls, config, trust_remote_code=False):
        return cls(config)

    @classmethod
    def from_pretrained(cls, path):
        Path(path).write_text("written")
        return cls(None)

    def save_pretrained(self, path):
        Path(path).write_text("written")


class AutoModel:
    @classmethod
    def from_config(cls, config, trust_remote_code=False):
        return TinyModel(config)

    @classmethod
    def from_pretrained(cls, path):
        Path(path).write_text("written")
""",
}
MODEL = """
import arraylib
import torch
import torch.nn.functional as F
import torch.package
from boardlib import SummaryWriter
from torch import nn
from evilpkg import Described, Factory, Fresh, Frozen, Plain, Settings, Writer, make


class Net(nn.Module):
    def __init__(self, width=4, *extra):
        super().__init__()
        self.fc = nn.Linear(4, width)
        self.extra = extra

    def forward(self, x):
        return self.fc(x)


def sample_batch():
    return torch.randn(4, 4)
"""


STAND_INS = ("evilpkg", "arraylib", "boardlib", "timm", "torchvision", "transformers")


@pytest.fixture
def stand_in_modules() -> Iterator[None]:
    """The stand-in packages must not outlive the test: later tests import the real ones."""
    saved = {k: m for k, m in sys.modules.items() if k.partition(".")[0] in STAND_INS}
    for name in saved:
        del sys.modules[name]
    yield
    for name in [k for k in sys.modules if k.partition(".")[0] in STAND_INS]:
        del sys.modules[name]
    sys.modules.update(saved)
    importlib.invalidate_caches()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stand_in_modules: None) -> Path:
    site = tmp_path / "venv" / "lib" / "site-packages"
    for name, text in {
        "evilpkg/__init__.py": EVILPKG.format(
            imported=str(tmp_path / "IMPORTED"), mark=str(tmp_path / "MARK")
        ),
        "arraylib/__init__.py": ARRAYLIB,
        "boardlib/__init__.py": BOARDLIB,
        "timm/__init__.py": TIMM.format(mark=str(tmp_path / "MARK")),
        "torchvision/__init__.py": "",
        "torchvision/models/__init__.py": TORCHVISION,
        "torchvision/models/_api.py": TORCHVISION_API.format(mark=str(tmp_path / "MARK")),
        **{f"transformers/{name}": text for name, text in TRANSFORMERS.items()},
    }.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(textwrap.dedent(text))
    project = tmp_path / "project"
    project.mkdir()
    (project / "model.py").write_text(MODEL)
    (project / "victim.py").write_text("VICTIM = 1\n")
    (project / "victim.bin").write_bytes(b"\x01" * 64)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.chdir(project)
    return project


def files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def assert_nothing_written(project: Path, before: dict[str, bytes], imported: bool = True) -> None:
    assert not (project.parent / "MARK").exists()
    assert not (project / "MARK").exists()
    assert files(project) == before
    if not imported:
        assert not (project.parent / "IMPORTED").exists(), "the installed package was imported"


# --- refused before the import ---------------------------------------------------------------------

BEFORE_IMPORT = {
    "evilpkg:make": "'evilpkg' is from an installed package, outside your project",
    "evilpkg:make(\"open('MARK', 'w')\")": "'evilpkg' is from an installed package",
    "evilpkg.sub:Writer('victim.py')": "'evilpkg.sub' is from an installed package",
    "torch.package:PackageExporter('victim.py')": "'torch.package' is from an installed package",
    "torch.utils.tensorboard:SummaryWriter('logs')": "'torch.utils.tensorboard' is from an installed package",
    "torch.hub:load('.', 'x')": "'torch.hub' is from an installed package",
    "arraylib:memmap('victim.bin', mode='w+')": "'arraylib' is from an installed package",
    "boardlib:SummaryWriter('logs')": "'boardlib' is from an installed package",
    "os:system('touch MARK')": "'os' is a standard-library module",
    "shutil:rmtree('.')": "'shutil' is a standard-library module",
}


@pytest.mark.parametrize("target", sorted(BEFORE_IMPORT))
def test_installed_packages_other_than_model_libraries_are_never_imported(project: Path, target: str) -> None:
    before = files(project)
    with pytest.raises(TargetError, match=BEFORE_IMPORT[target].replace("(", r"\(")) as refused:
        load(parse_target(target), {"code": "open('MARK', 'w')"}, {})
    assert "write a small model file" in (refused.value.hint or "")
    assert_nothing_written(project, before, imported=False)


# --- refused before the call -----------------------------------------------------------------------

BEFORE_CALL = {
    "model.py:Net(4, make(\"open('MARK', 'w')\"))": "calling make (from evilpkg: outside your project",
    "model.py:make": "refusing to call make (from evilpkg: outside your project",
    "model.py:Net(4, Writer('victim.py'))": "calling Writer (from evilpkg",
    "model.py:Net(4, Settings(path='victim.py'))": "calling Settings (from evilpkg",
    "model.py:Net(4, arraylib.memmap('victim.bin', mode='w+', shape=(4,)))": "calling arraylib.memmap",
    "model.py:Net(4, torch.package.PackageExporter('victim.py'))": "calling torch.package.PackageExporter",
    "model.py:Net(4, torch.save(1, 'victim.py'))": "calling torch.save",
    "model.py:Net(4, arraylib.save('victim.bin', 1))": "calling arraylib.save",
    "model.py:Net(4, SummaryWriter('logs'))": "calling SummaryWriter (from boardlib",
    "model.py:SummaryWriter": "refusing to call SummaryWriter (from boardlib",
    "model.py:Net(4, Factory())": "calling Factory (from evilpkg",
    "model.py:Net(4, Fresh())": "calling Fresh (from evilpkg",
    "model.py:Net(4, Described())": "calling Described (from evilpkg",
    "model.py:Net(4, arraylib.save)": "passing save (from arraylib",
    "model.py:Net(4, make)": "passing make (from evilpkg",
    "model.py:Net(4, torch.save)": "passing save (from torch.serialization",
    "model.py:Net(4, nn.Linear(4, 4).register_forward_hook(make))": "calling nn.Linear(4, 4).register_forward_hook",
    "transformers:AutoModel.from_pretrained('victim.py')": "calling AutoModel.from_pretrained (from transformers",
    "transformers:TinyModel(TinyConfig.from_pretrained('victim.py'))": "calling TinyConfig.from_pretrained",
    "transformers:TinyModel.from_pretrained('victim.py')": "calling TinyModel.from_pretrained",
    "transformers:TinyModel(TinyConfig()).save_pretrained('victim.py')": "save_pretrained (from transformers",
    "transformers:AutoModel.from_config(TinyConfig(), trust_remote_code=True)": "trust_remote_code=True",
    "timm:load_checkpoint(create_model('x'), 'victim.py')": "calling load_checkpoint (from timm",
    "timm:create_model('x', pretrained=True)": "pretrained=True: a config string never downloads",
    "torchvision.models:tiny_net(weights='DEFAULT')": "weights='DEFAULT': a config string never downloads",
    "torchvision.models:save('victim.py')": "calling save (from torchvision.models",
    "torchvision.models:get_model('tiny_net', weights='DEFAULT')": "weights='DEFAULT'",
}


@pytest.mark.parametrize("target", sorted(BEFORE_CALL))
def test_installed_callables_outside_the_allowlist_are_never_called(project: Path, target: str) -> None:
    before = files(project)
    with pytest.raises(TargetError, match=re.escape(BEFORE_CALL[target])) as refused:
        load(parse_target(target), {}, {})
    assert "write a small model file" in (refused.value.hint or "")
    assert_nothing_written(project, before)
    assert not (project / "logs").exists()


def test_init_values_cannot_turn_a_factory_into_a_download(project: Path) -> None:
    before = files(project)
    with pytest.raises(TargetError, match="pretrained=True"):
        load(parse_target("timm:create_model"), {"name": "x", "pretrained": True}, {})
    assert_nothing_written(project, before)


# --- what is allowed ---------------------------------------------------------------------------------

ALLOWED = {
    "timm:create_model('x')": "Sequential",
    "timm:create_model('x', pretrained=False)": "Sequential",
    "torchvision.models:tiny_net()": "Sequential",
    "torchvision.models:tiny_net(weights=None)": "Sequential",
    "torchvision.models:get_model('tiny_net')": "Sequential",
    "torch.nn:Linear(4, 2)": "Linear",
    "model.py:Net(3)": "Net",
    "model.py:Net(3, Plain(width=2), Frozen(), F.gelu, F.relu, nn.GELU, torch.float64)": "Net",
    "transformers:AutoModel.from_config(TinyConfig(hidden=3))": "TinyModel",
    "transformers:TinyModel.from_config(TinyConfig(hidden=3))": "TinyModel",
    "transformers:TinyModel(TinyConfig(hidden=3))": "TinyModel",
}


@pytest.mark.parametrize("target", sorted(ALLOWED))
def test_model_libraries_factories_and_the_project_may_be_called(project: Path, target: str) -> None:
    before = files(project)
    model = load(parse_target(target), {}, {}).module
    assert type(model).__name__ == ALLOWED[target]
    assert_nothing_written(project, before)


def test_a_package_in_the_project_folder_is_the_users_own(project: Path) -> None:
    (project / "mynets").mkdir()
    (project / "mynets" / "__init__.py").write_text(
        "from torch import nn\n\ndef build(width=3):\n    return nn.Linear(4, width)\n"
    )
    assert load(parse_target("mynets:build(5)"), {}, {}).module.out_features == 5


# --- the same through every place a TARGET can come from, on the command line ---------------------


@pytest.mark.parametrize(
    "where",
    ["gradcheck.yaml", "pyproject.toml", "command line"],
)
def test_config_files_and_the_command_line_never_import_an_installed_helper(
    cli, project: Path, where: str
) -> None:
    target = "evilpkg:make(\"open('MARK', 'w')\")"
    args = ["analyze", "--format", "json", "--batches", "1"]
    if where == "gradcheck.yaml":
        (project / "gradcheck.yaml").write_text(f"target: {json.dumps(target)}\n")
    elif where == "pyproject.toml":
        (project / "pyproject.toml").write_text(f"[tool.gradcheck]\ntarget = {json.dumps(target)}\n")
    else:
        args.insert(1, target)
    before = files(project)
    result = cli(*args)
    assert result.exit_code == 2, result
    assert result.stdout == ""
    assert "error: " in result.stderr and "installed package, outside your project" in result.stderr
    assert "hint: " in result.stderr and "Traceback" not in result.stderr
    assert_nothing_written(project, before, imported=False)


WRITERS = {
    "model.py:Net(4, arraylib.memmap('victim.bin', mode='w+', shape=(4,)))": "calling arraylib.memmap",
    "model.py:Net(4, SummaryWriter('logs'))": "calling SummaryWriter (from boardlib",
    "model.py:Net(4, torch.package.PackageExporter('victim.py'))": "calling torch.package.PackageExporter",
}


@pytest.mark.parametrize("target", sorted(WRITERS))
def test_a_config_file_reaches_no_writer_through_the_model_files_names(
    cli, project: Path, target: str
) -> None:
    """The model file imports the writers; a `target:` in gradcheck.yaml still cannot call them:
    exit 2, the refusal named, the file it names untouched, no folder created."""
    (project / "gradcheck.yaml").write_text(f"target: {json.dumps(target)}\n")
    before = files(project)
    result = cli("analyze", "--format", "json", "--batches", "1")
    assert result.exit_code == 2, result
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert WRITERS[target] in result.stderr and "write a small model file" in result.stderr
    assert_nothing_written(project, before)
    assert not (project / "logs").exists()


def test_an_allowed_factory_runs_the_analysis(cli, project: Path) -> None:
    """A registered torchvision builder from the command line is built and measured (exit 0/1)."""
    before = files(project)
    result = cli("analyze", "torchvision.models:tiny_net()", "--format", "json", "--batches", "1")
    assert result.exit_code in (0, 1), result
    assert json.loads(result.stdout)["layers"], result
    assert_nothing_written(project, before)
