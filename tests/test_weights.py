"""--weights: every checkpoint format people have, written here, loads, is measured and reported."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT

MODEL = str(ROOT / "tests" / "fixtures" / "trained" / "relu_mlp.py")
FAST = ("--batches", "1", "--format", "json")


def trained_state() -> dict[str, torch.Tensor]:
    """A state distinct from any init: a fresh ReluMLP's tensors times 3 (weight norms are checkable)."""
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "trained"))
    from relu_mlp import ReluMLP

    torch.manual_seed(123)
    return {k: v * 3 for k, v in ReluMLP().state_dict().items()}


def _prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in state.items()}


def _optimizer_state(state: dict[str, torch.Tensor]) -> dict[str, object]:
    params = [torch.nn.Parameter(v.clone()) for v in state.values()]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    sum(p.square().sum() for p in params).backward()  # type: ignore[union-attr]
    optimizer.step()
    return optimizer.state_dict()


def _plain(path: Path, state: dict[str, torch.Tensor]) -> Path:
    torch.save(state, path / "plain.pt")
    return path / "plain.pt"


def _wrapped(path: Path, state: dict[str, torch.Tensor]) -> Path:
    ckpt = {
        "model_state_dict": state,
        "optimizer_state_dict": _optimizer_state(state),
        "epoch": 7,
        "step": 1200,
    }
    torch.save(ckpt, path / "train.pt")
    return path / "train.pt"


def _lightning(path: Path, state: dict[str, torch.Tensor]) -> Path:
    ckpt = {
        "epoch": 3,
        "global_step": 4000,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": {**_prefixed(state, "model."), "criterion.pos_weight": torch.ones(1)},
        "optimizer_states": [_optimizer_state(state)],
        "lr_schedulers": [],
    }
    torch.save(ckpt, path / "last.ckpt")
    return path / "last.ckpt"


def _ddp(path: Path, state: dict[str, torch.Tensor]) -> Path:
    torch.save(_prefixed(state, "module."), path / "ddp.pt")
    return path / "ddp.pt"


def _compiled(path: Path, state: dict[str, torch.Tensor]) -> Path:
    torch.save(_prefixed(state, "_orig_mod."), path / "compiled.pt")
    return path / "compiled.pt"


def _safetensors(path: Path, state: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(path / "model.safetensors"))
    return path / "model.safetensors"


def _sharded(path: Path, state: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    folder = path / "hf"
    folder.mkdir()
    shards = {"model-00001-of-00002.safetensors": {}, "model-00002-of-00002.safetensors": {}}
    weight_map = {}
    for i, (key, value) in enumerate(state.items()):
        name = list(shards)[i % 2]
        shards[name][key] = value.contiguous()
        weight_map[key] = name
    for name, tensors in shards.items():
        save_file(tensors, str(folder / name))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return folder


def _bin_folder(path: Path, state: dict[str, torch.Tensor]) -> Path:
    folder = path / "bin"
    folder.mkdir()
    torch.save(state, folder / "pytorch_model.bin")
    return folder


FORMATS: dict[str, tuple[Callable[[Path, dict[str, torch.Tensor]], Path], dict[str, object]]] = {
    "plain": (_plain, {"format": "state_dict", "stripped_prefixes": []}),
    "wrapped": (
        _wrapped,
        {
            "format": "training checkpoint",
            "container_key": "model_state_dict",
            "step": 1200,
            "epoch": 7,
            "optimizer_state": True,
        },
    ),
    "lightning": (
        _lightning,
        {
            "format": "Lightning checkpoint",
            "stripped_prefixes": ["model."],
            "step": 4000,
            "ignored": ["criterion.pos_weight"],
        },
    ),
    "ddp": (_ddp, {"stripped_prefixes": ["module."]}),
    "compile": (_compiled, {"stripped_prefixes": ["_orig_mod."]}),
    "safetensors": (_safetensors, {"format": "safetensors"}),
    "sharded": (_sharded, {"format": "safetensors (2 shards)"}),
    "bin-folder": (_bin_folder, {"format": "pytorch_model.bin"}),
}


@pytest.mark.parametrize("kind", list(FORMATS))
def test_each_format_loads_measures_and_reports_the_mapping(cli, tmp_path: Path, kind: str) -> None:
    write, expected = FORMATS[kind]
    state = trained_state()
    path = write(tmp_path, state)
    result = cli("analyze", MODEL, "--weights", str(path), *FAST)
    assert result.exit_code == 0, result
    doc = json.loads(result.stdout)
    section = doc["checkpoint"]
    assert section["loaded"] == section["model_tensors"] == len(state)
    for key, value in expected.items():
        assert section[key] == value, (key, section)
    # The measured weights are the checkpoint's, not the init's.
    for layer in doc["layers"]:
        expected_norm = math.sqrt(
            sum(float(v.square().sum()) for k, v in state.items() if k.startswith(layer["name"] + "."))
        )
        assert layer["weight_norm"] == pytest.approx(expected_norm, rel=1e-4)


def test_nested_ddp_and_compile_prefixes_are_both_stripped(cli, tmp_path: Path) -> None:
    torch.save(_prefixed(trained_state(), "module._orig_mod."), tmp_path / "both.pt")
    result = cli("analyze", MODEL, "--weights", str(tmp_path / "both.pt"), *FAST)
    assert result.exit_code == 0, result
    assert json.loads(result.stdout)["checkpoint"]["stripped_prefixes"] == ["module.", "_orig_mod."]


def test_mapping_shown_in_terminal_markdown_and_html(cli, tmp_path: Path) -> None:
    path = _lightning(tmp_path, trained_state())
    for fmt in ("rich", "markdown", "html"):
        result = cli("analyze", MODEL, "--weights", str(path), "--batches", "1", "--format", fmt)
        assert result.exit_code == 0, result
        text = " ".join(result.stdout.split())
        assert "Lightning checkpoint" in text and "stripped 'model.'" in text.replace("&#x27;", "'"), fmt
        assert "step 4000" in text and "epoch 3" in text, fmt


def _mismatched(path: Path) -> Path:
    state = trained_state()
    state["fc1.weight"] = torch.zeros(32, 20)  # trained with another width
    state["classifier.weight"] = state.pop("head.weight")  # renamed attribute
    del state["head.bias"]
    torch.save(state, path / "other.pt")
    return path / "other.pt"


def test_mismatched_checkpoint_is_exit_2_with_the_key_diff(cli, tmp_path: Path) -> None:
    result = cli("analyze", MODEL, "--weights", str(_mismatched(tmp_path)), *FAST)
    assert result.exit_code == 2, result
    err = result.stderr
    assert "does not fit ReluMLP: 2 missing, 1 unexpected, 1 with another shape" in err
    assert "missing in the checkpoint: head.weight (closest in the checkpoint: classifier.weight)" in err
    assert "not in the model: classifier.weight (closest in the model: head.weight)" in err
    assert "shape differs: fc1.weight (checkpoint 32x20, model 64x20)" in err
    assert "hint: " in err and "--weights-partial" in err
    assert "Traceback" not in err and not result.stdout


def test_weights_partial_loads_what_fits_and_lists_what_stayed_at_init(cli, tmp_path: Path) -> None:
    result = cli("analyze", MODEL, "--weights", str(_mismatched(tmp_path)), "--weights-partial", *FAST)
    assert result.exit_code == 0, result
    section = json.loads(result.stdout)["checkpoint"]
    assert set(section["at_init"]) == {"head.weight", "head.bias", "fc1.weight"}
    assert section["unexpected"] == ["classifier.weight"]
    assert section["shape_mismatched"] == ["fc1.weight"]
    assert section["loaded"] == 3


class _Payload:
    """Unpickling this calls exec(), which writes the marker file: a checkpoint carrying code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def test_pickled_callable_is_refused_without_running_it(cli, tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pt"
    torch.save({**trained_state(), "hook": _Payload(marker)}, path)
    result = cli("analyze", MODEL, "--weights", str(path), *FAST)
    assert result.exit_code == 2, result
    assert "refused to unpickle" in result.stderr and "weights_only=True" in result.stderr
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is live: a full unpickle does run it
    assert marker.read_text() == "ran"


def test_missing_safetensors_package_is_exit_2_with_the_install_hint(
    cli, tmp_path: Path, monkeypatch
) -> None:
    import sys

    path = _safetensors(tmp_path, trained_state())
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)  # import fails as if not installed
    result = cli("analyze", MODEL, "--weights", str(path), *FAST)
    assert result.exit_code == 2, result
    assert "needs the safetensors package" in result.stderr
    assert "pip install 'gradcheck-cli[safetensors]'" in result.stderr


def test_not_a_checkpoint_is_exit_2(cli, tmp_path: Path) -> None:
    path = tmp_path / "notes.pt"
    path.write_text("not a checkpoint")
    result = cli("analyze", MODEL, "--weights", str(path), *FAST)
    assert result.exit_code == 2, result
    assert result.stderr.startswith("error: --weights") and "cannot read it" in result.stderr
