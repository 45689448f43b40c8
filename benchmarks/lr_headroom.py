"""Does --lr-headroom's predicted limit rank the learning rates at which real runs diverge?

Eight configurations of gradcheck's own small GPT (tests/fixtures/headroom/gpt.py): with and
without QK-norm and z-loss (1e-4), two widths and two depths (a half-fraction of the 2^4
design, each factor at each level four times). For each:

- predicted: `measure_headroom` (30 steps on one fixed batch per multiplier, AdamW at the base
  rate times each of MULTIPLIERS) gives the smallest multiplier that broke; the predicted
  limit rate is the base rate times it (times 1.5 past the largest multiplier when none broke).
- actual: 300-step runs with AdamW on fresh batches of the bigram language at the base rate
  times each multiplier, in increasing order; the actual limit is the first rate whose run
  diverges: a non-finite loss, a spike above 1.5 times the first loss after the first step,
  or a final loss (mean of the last 30 steps) above the midpoint between the first loss and
  the base-rate run's final loss (it lost more than half of what the base rate learned).

Spearman's rho between the two (ties at their mean rank) goes to docs/lr-headroom.md with the
table. CPU, one thread, tiny models: about ten minutes on a quiet machine.

    PYTHONPATH=. python benchmarks/lr_headroom.py [--quick] [--output docs/lr-headroom.md]
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import multiprocessing
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from gradcheck_cli.config.analyze_config import AnalyzeConfig
from gradcheck_cli.config.specs import TargetRef
from gradcheck_cli.load.target import LoadedModel
from gradcheck_cli.measure.batches import normalize_batch
from gradcheck_cli.measure.lr_headroom import measure_headroom
from gradcheck_cli.measure.preparation import prepare

ROOT = Path(__file__).resolve().parent.parent
BASE_LR = 3e-3
MULTIPLIERS = (1.0, 2.0, 3.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0, 50.0)
SEQ, BATCH, HEADS = 16, 8, 2
WIDTHS = (16, 32)


def _gpt_module():  # type: ignore[no-untyped-def]
    path = ROOT / "tests" / "fixtures" / "headroom" / "gpt.py"
    spec = importlib.util.spec_from_file_location("headroom_fixture_gpt", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


G = _gpt_module()


@dataclass(frozen=True)
class Config:
    qk_norm: bool
    z_loss: float
    width: int
    depth: int

    @property
    def label(self) -> str:
        parts = [f"w{self.width}", f"d{self.depth}"]
        parts += ["qk-norm"] if self.qk_norm else []
        parts += ["z-loss"] if self.z_loss else []
        return " ".join(parts)


def configurations() -> list[Config]:
    """The half-fraction 2^(4-1): depth is set by the parity of the other three factors."""
    out = []
    for qk in (False, True):
        for z in (0.0, 1e-4):
            for width in WIDTHS:
                odd = (qk + (z > 0) + (width == WIDTHS[1])) % 2 == 1
                out.append(Config(qk_norm=qk, z_loss=z, width=width, depth=2 if odd else 1))
    return out


def model(config: Config, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return G.HeadroomGPT(
        width=config.width,
        depth=config.depth,
        heads=HEADS,
        qk_norm=config.qk_norm,
        z_loss=config.z_loss,
        lr=BASE_LR,
    )


def predicted(config: Config, seed: int, steps: int) -> tuple[float | None, str, str]:
    seq = G.tokens(BATCH, SEQ, torch.Generator().manual_seed(seed))
    analyze = AnalyzeConfig(
        target=TargetRef(raw=config.label, kind="module", location="<python>"),
        lr_headroom=True,
        batches=1,
        seed=seed,
        headroom_steps=steps,
        headroom_multipliers=MULTIPLIERS,
    )
    loaded = LoadedModel(
        module=model(config, seed),
        found_by="explicit",
        hooks_from="analyze()",
        source=None,
        optimizer_hook=G.build_optimizer,
    )
    batch = normalize_batch({"idx": seq[:, :-1], "targets": seq[:, 1:]})
    h = measure_headroom(prepare(analyze, loaded, [batch]))
    return h.limit, h.first_instrument or "-", h.layer or "-"


def train(config: Config, seed: int, lr: float, steps: int) -> list[float]:
    net = model(config, seed)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    data = torch.Generator().manual_seed(10_000 + seed)
    losses = []
    for _ in range(steps):
        seq = G.tokens(BATCH, SEQ, data)
        loss = net(seq[:, :-1], seq[:, 1:])["loss"]
        losses.append(float(loss.detach()))
        if not math.isfinite(losses[-1]) or losses[-1] > 1.5 * losses[0]:
            break  # diverged: the rest of the run changes nothing
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return losses


def final(losses: list[float]) -> float:
    tail = losses[-30:]
    return sum(tail) / len(tail)


def diverged(losses: list[float], base_final: float) -> bool:
    if not all(math.isfinite(v) for v in losses):
        return True
    if max(losses[1:], default=0.0) > 1.5 * losses[0]:
        return True
    return final(losses) > (losses[0] + base_final) / 2


def actual(config: Config, seed: int, steps: int) -> float | None:
    """The smallest multiplier whose run diverges, by bisection (divergence taken as monotone in
    the rate); None when the largest does not."""
    base_final = final(train(config, seed, BASE_LR, steps))
    lo, hi = 0, len(MULTIPLIERS)  # MULTIPLIERS[lo] holds; MULTIPLIERS[hi] diverges (len: none known)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if diverged(train(config, seed, BASE_LR * MULTIPLIERS[mid], steps), base_final):
            hi = mid
        else:
            lo = mid
    return MULTIPLIERS[hi] if hi < len(MULTIPLIERS) else None


def ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    var = math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
    return cov / var if var else math.nan


def _value(limit: float | None) -> float:
    return MULTIPLIERS[-1] * 1.5 if limit is None else limit


def _cell(limit: float | None) -> str:
    return f"> {MULTIPLIERS[-1]:g}x" if limit is None else f"{limit:g}x ({BASE_LR * limit:.3g})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="100-step runs and 20 headroom steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps, k = (100, 20) if args.quick else (300, 30)
    started = time.perf_counter()
    jobs = [(config, args.seed, steps, k) for config in configurations()]
    with multiprocessing.get_context("fork").Pool(args.processes) as pool:
        rows = pool.starmap(_row, jobs)
    predicted_values = [_value(r.predicted) for r in rows]
    actual_values = [_value(r.actual) for r in rows]
    rho = spearman(predicted_values, actual_values)
    print(f"Spearman rho = {rho:.3f} over {len(rows)} configurations ({time.perf_counter() - started:.0f} s)")
    if args.output is not None:
        args.output.write_text(_document([r.cells for r in rows], rho, steps, k, args.seed))


@dataclass(frozen=True)
class Row:
    predicted: float | None
    actual: float | None
    cells: tuple[str, ...]


def _row(config: Config, seed: int, steps: int, k: int) -> Row:
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    limit, instrument, layer = predicted(config, seed, k)
    t1 = time.perf_counter()
    real = actual(config, seed, steps)
    t2 = time.perf_counter()
    cells = (config.label, _cell(limit), instrument, layer, _cell(real), f"{t1 - t0:.1f}", f"{t2 - t1:.1f}")
    print(" | ".join(cells), flush=True)
    return Row(predicted=limit, actual=real, cells=cells)


def _document(rows: list[tuple[str, ...]], rho: float, steps: int, k: int, seed: int) -> str:
    head = (
        "| configuration | predicted limit (lr) | first instrument | layer | "
        f"{steps}-step runs diverge from (lr) | headroom s | runs s |"
    )
    lines = [head, "|---|---|---|---|---|---|---|", *("| " + " | ".join(r) + " |" for r in rows)]
    return TEMPLATE.format(
        table="\n".join(lines),
        rho=rho,
        n=len(rows),
        steps=steps,
        k=k,
        seed=seed,
        base=BASE_LR,
        multipliers=", ".join(f"{m:g}" for m in MULTIPLIERS),
        machine=f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread",
    )


TEMPLATE = (ROOT / "benchmarks" / "lr_headroom_template.md").read_text()
"""docs/lr-headroom.md: the definitions, the algebra and QK-norm tables, and this run's table."""


if __name__ == "__main__":
    main()
