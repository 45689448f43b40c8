"""Device selection, input movement and seeding, tested on CPU by injecting what is available.

The tests marked `cuda` need a GPU; they skip without one, except under
GRADCHECK_REQUIRE_CUDA=1 (scripts/gpu-check.sh), where a missing GPU is a failure.
"""

from __future__ import annotations

import json
import os
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from gradcheck_cli.config.analyze_config import AnalyzeConfig
from gradcheck_cli.config.specs import parse_target
from gradcheck_cli.load.target import LoadedModel
from gradcheck_cli.measure import device as device_module
from gradcheck_cli.measure.batches import move
from gradcheck_cli.measure.device import Availability, resolve_device
from gradcheck_cli.measure.preparation import pick_device, prepare
from gradcheck_cli.measure.probe import GradientProbe
from gradcheck_cli.records.errors import DeviceError

HAS_CUDA = torch.cuda.is_available()
REQUIRE_CUDA = os.environ.get("GRADCHECK_REQUIRE_CUDA") == "1"
cuda = pytest.mark.skipif(not HAS_CUDA and not REQUIRE_CUDA, reason="needs a CUDA GPU")

NONE = Availability(cuda_count=0, mps=False)
TWO_GPUS = Availability(cuda_count=2, mps=False)
MAC = Availability(cuda_count=0, mps=True)


# -- selection -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("available", "expected"),
    [(NONE, "cpu"), (MAC, "mps"), (TWO_GPUS, "cuda"), (Availability(cuda_count=1, mps=True), "cuda")],
)
def test_auto_picks_cuda_then_mps_then_cpu(available: Availability, expected: str) -> None:
    assert resolve_device("auto", available) == expected


@pytest.mark.parametrize(
    ("spec", "expected"), [("cpu", "cpu"), ("cuda", "cuda"), ("cuda:1", "cuda:1"), (" CUDA:0 ", "cuda:0")]
)
def test_explicit_devices_that_exist(spec: str, expected: str) -> None:
    assert resolve_device(spec, TWO_GPUS) == expected


def test_cuda_index_past_the_last_gpu_names_what_exists() -> None:
    with pytest.raises(DeviceError) as caught:
        resolve_device("cuda:3", TWO_GPUS)
    assert "cuda:3" in caught.value.message
    assert "2 CUDA device(s)" in caught.value.message
    assert caught.value.hint == "available: cpu, cuda (cuda:0..cuda:1)"


@pytest.mark.parametrize(
    ("spec", "words"),
    [("mps", "MPS (Apple GPU) is not available"), ("cuda", "no CUDA device"), ("cuda:0", "no CUDA device")],
)
def test_absent_devices_are_errors_naming_cpu(spec: str, words: str) -> None:
    with pytest.raises(DeviceError) as caught:
        resolve_device(spec, NONE)
    assert words in caught.value.message
    assert caught.value.hint == "available: cpu"


def test_unknown_device_name_lists_the_choices() -> None:
    with pytest.raises(DeviceError) as caught:
        resolve_device("gpu", TWO_GPUS)
    assert "unknown --device 'gpu'" in caught.value.message
    assert caught.value.hint is not None and "cuda:N" in caught.value.hint


def test_cli_cuda3_on_a_two_gpu_machine_exits_2(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_module.Availability, "detect", classmethod(lambda cls: TWO_GPUS))
    result = cli("analyze", "builtin:residual-mlp", "--device", "cuda:3", "--format", "json")
    assert result.exit_code == 2, result
    assert "2 CUDA device(s)" in result.stderr
    assert "available: cpu, cuda (cuda:0..cuda:1)" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_cli_mps_absent_exits_2(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_module.Availability, "detect", classmethod(lambda cls: NONE))
    result = cli("analyze", "builtin:residual-mlp", "--device", "mps")
    assert result.exit_code == 2, result
    assert "MPS" in result.stderr and "available: cpu" in result.stderr


# -- a model that lives on a device ----------------------------------------------------------------
# The meta device stands in for an accelerator: it is not cpu, and it exists on every machine.
def test_model_already_on_a_device_stays_there_under_auto() -> None:
    model = nn.Linear(4, 2, device="meta")
    assert pick_device(model, "auto") == "meta"


def test_explicit_device_moves_a_model_that_lives_elsewhere() -> None:
    model = nn.Linear(4, 2, device="meta")
    assert pick_device(model, "cpu") == "cpu"


def test_nested_inputs_move_and_keep_their_kinds() -> None:
    batch = {
        "x": torch.randn(2, 3),
        "pair": (torch.randn(2), [torch.randint(0, 5, (2,)), {"deep": torch.ones(1)}]),
        "flag": True,
    }
    moved = move(batch, "meta", torch.float64)
    leaves = [moved["x"], moved["pair"][0], moved["pair"][1][0], moved["pair"][1][1]["deep"]]
    assert all(t.device.type == "meta" for t in leaves)
    assert [t.dtype for t in leaves] == [torch.float64, torch.float64, torch.int64, torch.float64]
    assert isinstance(moved["pair"], tuple) and isinstance(moved["pair"][1], list)
    assert moved["flag"] is True


def test_sample_batch_inputs_follow_the_model_to_its_device() -> None:
    def sample_batch() -> object:  # built on the CPU, as a model file would build it
        return {"args": (torch.randn(2, 4), [torch.randn(2, 4)]), "kwargs": {"mask": torch.ones(2)}}

    loaded = LoadedModel(
        module=nn.Linear(4, 2, device="meta"), found_by="explicit", source=None, sample_batch=sample_batch
    )
    config = AnalyzeConfig(target=parse_target("x.py"), batches=2)
    prepared = prepare(config, loaded)
    assert prepared.device == "meta"
    for batch in prepared.batches:
        tensors = [batch.args[0], batch.args[1][0], batch.kwargs["mask"]]
        assert all(t.device.type == "meta" for t in tensors)


# -- seeds ------------------------------------------------------------------------------------------
SEEDED_MODEL = """
import torch
from torch import nn


def build_model():
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))


def sample_batch():
    return torch.randn(6, 8), torch.randint(0, 3, (6,))
"""


def _layer_numbers(cli, path: Path, device: str, seed: int) -> list[tuple[float, ...]]:
    flags = ("--device", device, "--seed", str(seed), "--format", "json", "--batches", "2")
    result = cli("analyze", str(path), *flags)
    assert result.exit_code in (0, 1), result
    layers = json.loads(result.stdout)["layers"]
    return [(row["grad_norm"], row["weight_norm"], row["act_grad_rms"]) for row in layers]


def test_same_seed_same_numbers_other_seed_other_numbers(cli, tmp_path: Path) -> None:
    path = tmp_path / "seeded.py"
    path.write_text(textwrap.dedent(SEEDED_MODEL))
    first = _layer_numbers(cli, path, "cpu", 7)
    assert _layer_numbers(cli, path, "cpu", 7) == first
    assert _layer_numbers(cli, path, "cpu", 8) != first


# -- on a GPU -------------------------------------------------------------------------------------
@cuda
def test_gpu_probe_makes_no_per_layer_host_sync() -> None:
    """Forward and backward with the probe's hooks must not sync; collect() syncs a constant number
    of times per batch, however deep the model."""
    assert HAS_CUDA, "GRADCHECK_REQUIRE_CUDA=1 but no CUDA device"
    syncs = {depth: _syncs_per_collect(depth) for depth in (2, 24)}
    assert syncs[2] == syncs[24], syncs
    assert syncs[2] <= 3, syncs


def _syncs_per_collect(depth: int) -> int:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(32, 32), nn.ReLU(), nn.LayerNorm(32), nn.Tanh()]
    model = nn.Sequential(*layers).cuda()
    x = torch.randn(16, 32, device="cuda")
    model(x).sum().backward()  # warm-up: CUDA context, cuBLAS handles and allocator pools exist first
    with GradientProbe(model) as probe:
        for _ in range(2):
            model.zero_grad(set_to_none=True)
            torch.cuda.set_sync_debug_mode("error")
            try:
                model(x).square().mean().backward()  # every hook fires here: no sync allowed
            finally:
                torch.cuda.set_sync_debug_mode(0)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    probe.collect()
                finally:
                    torch.cuda.set_sync_debug_mode(0)
        assert len(probe.layer_stats()) == depth * 2
    return sum("synchroniz" in str(w.message) for w in caught)


@cuda
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_gpu_analysis_runs_on_cuda_in_every_precision(cli, dtype: str) -> None:
    result = cli("analyze", "builtin:transformer", "--device", "cuda", "--dtype", dtype, "--format", "json")
    assert result.exit_code == 0, result
    report = json.loads(result.stdout)
    assert report["model"]["device"] == "cuda" and report["model"]["dtype"] == dtype
    assert all(row["nonfinite"] == 0 for row in report["layers"])


@cuda
def test_gpu_same_seed_same_numbers(cli, tmp_path: Path) -> None:
    path = tmp_path / "seeded.py"
    path.write_text(textwrap.dedent(SEEDED_MODEL))
    first = _layer_numbers(cli, path, "cuda", 3)
    again = _layer_numbers(cli, path, "cuda", 3)
    # index_add_ on CUDA sums with atomics: equal up to float32 rounding, not bit for bit.
    for a, b in zip(first, again, strict=True):
        assert a == pytest.approx(b, rel=1e-5)


@cuda
def test_gpu_model_on_cuda_stays_and_cpu_flag_moves_it() -> None:
    model = nn.Linear(4, 2).cuda()
    assert pick_device(model, "auto") == "cuda:0"
    assert pick_device(model, "cpu") == "cpu"
