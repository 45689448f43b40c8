"""torch.distributed on CPU (gloo, 2 processes): the combined statistics equal one process's.

One spawn runs three cases in the same process group, to keep the test short:
- analyze(): rank r measures batches r, r+2, ...; every rank ends with all batches' statistics;
- GradientMonitor on DDP: each rank trains on half of each global batch;
- GradientMonitor on FSDP2 (fully_shard, DTensor gradients), where this torch build has it.
Each is compared, field by field, with one process doing the same work on the whole data.
A last test runs `torchrun --nproc_per_node=2 -m gradcheck_cli analyze` end to end.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from gradcheck_cli import GradientMonitor, analyze

WORLD = 2
FIELDS = ("grad_norm", "weight_norm", "act_grad_norm", "act_grad_rms", "zero_grad_fraction", "nonfinite")
ACT_FIELDS = ("dead_fraction", "saturated_fraction")
REL = 1e-5


def _fully_shard() -> Any:
    try:
        from torch.distributed.fsdp import fully_shard
    except ImportError:
        return None
    return fully_shard


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    # odd sizes: FSDP2 shards them unevenly (with padding)
    return nn.Sequential(nn.Linear(8, 15), nn.ReLU(), nn.Linear(15, 16), nn.Tanh(), nn.Linear(16, 5))


def batches(count: int = 4, size: int = 6) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [
        (torch.randn(size, 8, generator=generator) * 3, torch.randint(0, 5, (size,), generator=generator))
        for _ in range(count)
    ]


def snapshot(layers: Any, activations: Any) -> dict[str, Any]:
    return {
        "layers": {s.name: {f: getattr(s, f) for f in (*FIELDS, "calls")} for s in layers},
        "per_batch": {s.name: list(s.batch_act_grad_norm) for s in layers},
        "activations": {a.name: {f: getattr(a, f) for f in ACT_FIELDS} for a in activations},
    }


def analyze_case(split: bool = True) -> dict[str, Any]:
    model, data = tiny_model(), batches(count=3)  # uneven: rank 0 measures batches 0 and 2, rank 1 batch 1
    report = analyze(model, inputs=data, loss_fn=nn.functional.cross_entropy, split_across_ranks=split)
    return snapshot([row.stats for row in report.layers], report.activations)


def monitored_training(wrap: Any, rank: int, world: int, steps: int = 3) -> dict[str, Any]:
    """Train on global batches of 8, this rank taking its 8/world rows; the monitor measures every step."""
    model = tiny_model()
    trained = wrap(model)
    optimizer = torch.optim.SGD(trained.parameters(), lr=0.5)
    out: dict[str, Any] = {"steps": []}
    with GradientMonitor(trained, every=1, callback=None) as monitor:
        for x, y in batches(count=steps, size=8):
            share = slice(rank * 8 // world, (rank + 1) * 8 // world)
            loss = nn.functional.cross_entropy(trained(x[share]), y[share])
            optimizer.zero_grad()
            loss.backward()
            monitor.step(loss)
            optimizer.step()
        for record in monitor.history:
            out["steps"].append(snapshot([r.stats for r in record.report.layers], record.report.activations))
    return out


def _ddp(model: nn.Module) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model)


def _fsdp(model: nn.Module) -> nn.Module:
    fully_shard = _fully_shard()
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer)
    fully_shard(model)
    return model


def _fsdp_unsupported() -> str | None:
    """Why this torch build cannot shard a model with FSDP2 on CPU/gloo, or None when it can."""
    if _fully_shard() is None:
        return "this torch build has no torch.distributed.fsdp.fully_shard"
    try:
        _fsdp(tiny_model())(torch.zeros(2, 8)).sum().backward()
    except Exception as exc:
        return f"FSDP2 on CPU/gloo fails in this torch build: {type(exc).__name__}: {exc}"
    return None


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    results: dict[str, Any] = {"analyze": analyze_case(), "ddp": monitored_training(_ddp, rank, WORLD)}
    if rank == 0:  # by default analyze() stays in the calling process: no collective, no hang
        results["local"] = analyze_case(split=False)
    unsupported = _fsdp_unsupported()
    if unsupported:
        results["fsdp_unsupported"] = unsupported
    else:  # supported: a failure from here on is a gradcheck bug, not a reason to skip
        results["fsdp"] = monitored_training(_fsdp, rank, WORLD)
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(results))
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("ranks")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)]


def assert_close(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got.keys() == want.keys()
    for section in ("layers", "activations"):
        assert got[section].keys() == want[section].keys()
        for name, fields in want[section].items():
            for field, value in fields.items():
                measured = got[section][name][field]
                assert measured == pytest.approx(value, rel=REL, abs=1e-12), (section, name, field)
    for name, values in want["per_batch"].items():  # batches in their global order
        assert got["per_batch"][name] == pytest.approx(values, rel=REL), name


def test_split_batches_equal_one_process(two_ranks: list[dict[str, Any]]) -> None:
    one = analyze_case()
    assert all(v["grad_norm"] > 0 for v in one["layers"].values())
    for rank in two_ranks:  # every rank holds the combined statistics
        assert_close(rank["analyze"], one)
    assert_close(two_ranks[0]["local"], one)


def test_ddp_monitor_equals_one_process_on_the_global_batch(two_ranks: list[dict[str, Any]]) -> None:
    one = monitored_training(lambda m: m, rank=0, world=1)
    assert len(one["steps"]) == 3
    for got, want in zip(two_ranks[0]["ddp"]["steps"], one["steps"], strict=True):
        assert_close(got, want)


def test_fsdp2_monitor_equals_one_process(two_ranks: list[dict[str, Any]]) -> None:
    if "fsdp_unsupported" in two_ranks[0]:
        pytest.skip(two_ranks[0]["fsdp_unsupported"])
    one = monitored_training(lambda m: m, rank=0, world=1)
    for got, want in zip(two_ranks[0]["fsdp"]["steps"], one["steps"], strict=True):
        assert_close(got, want)


def _layers(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {layer["name"]: layer for layer in document["layers"]}


def test_torchrun_cli_prints_one_report_equal_to_one_process(cli: Any) -> None:
    args = ["analyze", "builtin:tanh-mlp", "--batches", "3", "--format", "json", "--device", "cpu"]
    args += ["--arch-opt", "depth=4", "--arch-opt", "width=16", "--arch-opt", "batch=8"]
    # The supervised path: each rank's gradcheck runs its analysis in a worker that inherits the env.
    env = {**{k: v for k, v in os.environ.items() if k != "GRADCHECK_IN_PROCESS"}, "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    launch += ["--master_port", str(_free_port()), "-m", "gradcheck_cli"]
    two = subprocess.run([*launch, *args], capture_output=True, text=True, env=env, timeout=120)
    one = cli(*args)
    assert two.returncode == one.exit_code, two.stderr[-2000:]
    assert two.stdout.count('"schema"') == 1  # rank 1 printed nothing
    got, want = _layers(json.loads(two.stdout)), _layers(json.loads(one.stdout))
    assert got.keys() == want.keys()
    for name, layer in want.items():
        for field in ("grad_norm", "act_grad_norm", "act_grad_rms", "zero_grad_fraction", "nonfinite"):
            if layer[field] is None or (isinstance(layer[field], float) and math.isnan(layer[field])):
                assert got[name][field] is None
            else:
                assert got[name][field] == pytest.approx(layer[field], rel=REL), (name, field)
