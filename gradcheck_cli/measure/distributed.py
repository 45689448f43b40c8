"""torch.distributed: combine what every rank measured, so that rank 0 reports the whole run.

Two ways of spreading work, two ways of combining:

- `gradcheck analyze` under torchrun splits the sample batches across ranks (rank r measures
  batches r, r+W, ...). Each batch's raw sums (sums of squares, element counts, zero and
  non-finite counts) are placed at the batch's global position and summed with all_reduce,
  so every rank ends up with exactly the rows one process would have measured.
- A training loop under DDP or FSDP2 splits each global batch across ranks. Parameter
  gradients are already averaged over ranks (by DDP, or made global from FSDP2 shards in the
  probe), so they are averaged again (a no-op on equal values); output gradients are each
  rank's share of the loss DDP averages, so their sums of squares are summed and divided by
  W^2: the statistics of one process training on the global batch.

Without an initialised process group of more than one rank, every function here is a no-op.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import nn

from gradcheck_cli.measure.aggregate import SUM_FIELDS, BatchSums
from gradcheck_cli.measure.grads import to_host
from gradcheck_cli.measure.probe import GradientProbe
from gradcheck_cli.records.errors import ConfigError

PARAMETER_SUMS = ("grad_sq", "zero_count", "grad_numel", "has_grad")
"""BatchSums fields of parameter gradients: already averaged over ranks by DDP (or made global)."""


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


_local_only = False


def active() -> bool:
    if _local_only:
        return False
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@contextlib.contextmanager
def local_only() -> Iterator[None]:
    """Measure in this process alone, even inside a process group (no collectives are issued)."""
    global _local_only
    before, _local_only = _local_only, True
    try:
        yield
    finally:
        _local_only = before


def unwrap(model: nn.Module) -> nn.Module:
    """DDP and DataParallel wrap the user's model as `.module`; FSDP2 changes the model in place.

    Calling the wrapped module directly is safe: DDP's gradient hooks act only after a forward
    through the wrapper."""
    inner = getattr(model, "module", None)
    if isinstance(inner, nn.Module) and type(model).__name__ in ("DistributedDataParallel", "DataParallel"):
        return inner
    return model


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_reporting_rank() -> bool:
    """Only rank 0 renders reports, calls callbacks and writes files."""
    return rank() == 0


def setup() -> None:
    """Under torchrun, join the process group (unless the caller already has)."""
    if _local_only or not launched_by_torchrun() or not dist.is_available() or dist.is_initialized():
        return
    if torch.cuda.is_available():
        # More ranks than GPUs share them; gradcheck's own collectives go through gloo on the CPU.
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        dist.init_process_group(backend="cpu:gloo,cuda:nccl")
    else:
        dist.init_process_group(backend="gloo")
    atexit.register(_teardown)


def _teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _comm_device() -> torch.device:
    """Where collectives run: the CPU with gloo, the current GPU with an NCCL-only group."""
    backend = str(dist.get_backend()).lower()
    if "gloo" in backend or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


def reduce_sum(tensor: torch.Tensor) -> None:
    """Sum `tensor` over all ranks, in place."""
    if not active():
        return
    on_comm = tensor.to(_comm_device())
    dist.all_reduce(on_comm, op=dist.ReduceOp.SUM)
    tensor.copy_(on_comm)


def my_batches(total: int) -> list[int]:
    """The global indices of the sample batches this rank measures."""
    if not active():
        return list(range(total))
    if total < world_size():
        raise ConfigError(
            f"{world_size()} ranks need at least {world_size()} sample batches, got --batches {total}",
            f"pass --batches {world_size()} or more, or fewer processes to torchrun",
        )
    return list(range(rank(), total, world_size()))


def combine_batches(probe: GradientProbe, mine: list[int], total: int) -> None:
    """Give every rank the raw sums of all `total` batches (each rank measured those in `mine`)."""
    if not active():
        return
    every = {}
    for name, own in batch_sums(probe).items():
        every[name] = torch.zeros(total, *own.shape[1:], dtype=torch.float64)
        every[name][mine] = own
    replace_batch_sums(probe, _summed(every))
    sum_counters(probe)


def combine_step(probe: GradientProbe) -> None:
    """One data-parallel training step: make each rank's statistics those of the global batch."""
    if not active():
        return
    world = world_size()
    sums = _summed(batch_sums(probe))
    for name in PARAMETER_SUMS:
        sums[name] /= world
    sums["act_sq"] /= world * world
    finite = torch.isfinite
    sums["nonfinite"] = (~finite(sums["grad_sq"])).double() + (~finite(sums["act_sq"])).double()
    replace_batch_sums(probe, sums)
    sum_counters(probe)


def batch_sums(probe: GradientProbe) -> dict[str, torch.Tensor]:
    """Per BatchSums field, float64 [batches, layers]: each collected batch's raw sums."""
    batches = len(probe.layers[0].rows) if probe.layers else 0
    return {
        name: torch.tensor(
            [[getattr(layer.rows[b], name) for layer in probe.layers] for b in range(batches)],
            dtype=torch.float64,
        ).reshape(batches, len(probe.layers))
        for name in SUM_FIELDS
    }


def replace_batch_sums(probe: GradientProbe, sums: dict[str, torch.Tensor]) -> None:
    """Install combined raw sums (the layout of batch_sums, any number of batches)."""
    host = {name: sums[name].double().tolist() for name in SUM_FIELDS}
    batches = len(host[SUM_FIELDS[0]])
    for i, layer in enumerate(probe.layers):
        layer.rows = [BatchSums(**{name: host[name][b][i] for name in SUM_FIELDS}) for b in range(batches)]


def sum_counters(probe: GradientProbe) -> None:
    """Sum call counts and activation counters over processes.

    Every process must have run at least one forward (the ReLU unit masks need their size)."""
    counts = [float(probe.forwards)] + [float(layer.calls) for layer in probe.layers]
    measured = [act.counts() for act in probe.activations]
    sums = to_host([m[0] for m in measured], [m[2] for m in measured])
    n = len(probe.activations)
    for i, act in enumerate(probe.activations):
        counts += [float(act.total), sums[i] if act.tails else 0.0, sums[n + i]]
    summed = torch.tensor(counts, dtype=torch.float64)
    reduce_sum(summed)
    values = summed.tolist()
    probe.forwards = int(values[0])
    for i, layer in enumerate(probe.layers, start=1):
        layer.calls = int(values[i])
    for i, act in enumerate(probe.activations):
        total, tail, centred_sq = values[1 + len(probe.layers) + 3 * i : 4 + len(probe.layers) + 3 * i]
        act.total = int(total)
        act.tails = [torch.tensor(tail)] if act.family != "relu" else []
        act.norms = [torch.tensor(centred_sq).sqrt()] if act.family != "relu" else []
        for call in sorted(act.peaks):  # every process ran the same calls, in the same order
            alive = (act.peaks[call] > 0).to(torch.float64)
            varied = (act.peaks[call] > act.lows[call]).to(torch.float64)
            reduce_sum(alive)
            reduce_sum(varied)
            act.peaks[call] = alive  # > 0 where any process saw the unit positive
            act.lows[call] = -(varied > 0).to(torch.float64)  # under the peak where any varied


def _summed(sums: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each named sum added up over ranks, with one collective for all of them."""
    names = sorted(sums)
    packed = torch.stack([sums[name] for name in names])
    reduce_sum(packed)
    return dict(zip(names, packed.unbind(0), strict=True))


def gather_floats(values: list[float]) -> list[float]:
    """Every rank's values, rank 0's first."""
    if not active():
        return values
    gathered: list[list[float] | None] = [None] * world_size()
    dist.all_gather_object(gathered, values)
    return [v for part in gathered for v in (part or [])]
