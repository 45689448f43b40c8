"""Cost of `gradcheck scale`: 4 widths x 3 seeds on a 4-layer pre-LN transformer up to 512 wide,
against the plain work it cannot avoid, measured in the same run: building each model and running
the same 3 forward/backward passes (and 2 Adam steps) on the same batch, without hooks.

  python benchmarks/scaling.py                 # widths 64..512, 3 seeds, 3 steps
  python benchmarks/scaling.py --seeds 1       # quicker
  python benchmarks/scaling.py --verify        # the verification table of docs/scaling.md

Prints the CPU time (process time, all threads) and wall time of both, their ratio, and the
verdict. The model is `transformer` below (benchmarks/reference_models.py's Transformer).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from reference_models import Transformer  # noqa: E402

VOCAB, CONTEXT, LAYERS, HEADS = 1000, 64, 4, 4
INPUT = f"int:8x{CONTEXT}:{VOCAB}"


def transformer(width: int = 512) -> Transformer:
    """4 layers, d_model = width, 4 heads, 64 positions, vocabulary 1000, untied head."""
    return Transformer(vocab=VOCAB, d=width, heads=HEADS, layers=LAYERS, context=CONTEXT, tied=False)


def plain(widths: list[int], seeds: int, steps: int) -> tuple[float, float]:
    """Build, then `steps` forward/backward passes and steps - 1 Adam steps, per width and seed."""
    cpu, wall = time.process_time(), time.perf_counter()
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, VOCAB, (8, CONTEXT), generator=g)
    target = torch.randint(0, VOCAB, (8, CONTEXT), generator=g)
    for seed in range(seeds):
        for width in widths:
            torch.manual_seed(seed)
            model = transformer(width)
            opt = torch.optim.Adam(model.parameters(), lr=0.01)
            for t in range(steps):
                opt.zero_grad()
                F.cross_entropy(model(idx).flatten(0, 1), target.flatten()).backward()
                if t < steps - 1:
                    opt.step()
    return time.process_time() - cpu, time.perf_counter() - wall


def scaled(widths: list[int], seeds: int, steps: int):  # type: ignore[no-untyped-def]
    from gradcheck_cli.config.analyze_config import build_config
    from gradcheck_cli.config.options import values_from_flags
    from gradcheck_cli.config.scale_settings import scale_settings
    from gradcheck_cli.judge.scaling import judge_scaling
    from gradcheck_cli.measure.scaling import measure_widths

    flags = values_from_flags({"inputs": [INPUT], "optimizer": "adam", "lr": 0.01})
    config = build_config(f"{Path(__file__).resolve()}:transformer", flags, {})
    sweep = "width=" + ",".join(str(w) for w in widths)
    config = dataclasses.replace(config, scale=scale_settings(sweep, "standard", seeds, steps))
    cpu, wall = time.process_time(), time.perf_counter()
    report = judge_scaling(measure_widths(config), "standard")
    return time.process_time() - cpu, time.perf_counter() - wall, report


FIXTURES = HERE.parent / "tests" / "fixtures" / "scaling" / "models.py"
VERIFY = (  # factory, parametrization, modules shown
    ("fixed_std", "standard", ("layers.0", "layers.1", "layers.2")),
    ("fan_in", "standard", ("layers.0", "layers.1", "layers.2")),
    ("standard", "standard", ("fc1", "fc2", "fc3", "head")),
    ("mup", "mup", ("fc1", "fc2", "fc3", "head")),
    ("mup_bottleneck", "mup", ("fc2",)),
    ("mup_unscaled_readout", "mup", ("fc2", "head")),
)


def verify(seeds: int) -> None:
    """Each fixture of tests/test_scale.py at widths 64..512: every exponent, band and verdict."""
    from gradcheck_cli.config.analyze_config import build_config
    from gradcheck_cli.config.options import values_from_flags
    from gradcheck_cli.config.scale_settings import scale_settings
    from gradcheck_cli.judge.scale_expectations import band_text
    from gradcheck_cli.judge.scaling import judge_scaling
    from gradcheck_cli.measure.scaling import measure_widths

    print("| model | parametrization | module (role) | forward | backward | update | status |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for factory, parametrization, shown in VERIFY:
        flags = values_from_flags({"inputs": ["32x16"], "optimizer": "adam"})
        config = build_config(f"{FIXTURES}:{factory}", flags, {})
        settings = scale_settings("width=64,128,256,512", parametrization, seeds, 3)
        report = judge_scaling(measure_widths(dataclasses.replace(config, scale=settings)), parametrization)
        for m in (m for m in report.modules if m.name in shown):
            cells = [
                f"{getattr(m, q):+.2f} ({m.spread.get(q, 0):.2f}) [{band_text(m.expected[q])}]"
                for q in ("forward", "backward", "update")
            ]
            print(
                f"| {factory} | {parametrization} | {m.name} ({m.role}) | {' | '.join(cells)} | {m.status} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--widths", default="64,128,256,512")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--verify", action="store_true")
    args = parser.parse_args()
    if args.verify:
        verify(args.seeds)
        return
    widths = [int(w) for w in args.widths.split(",")]
    plain(widths[:1], 1, 2)  # warm-up: torch's lazy imports (Adam's first construction)
    base_cpu, base_wall = plain(widths, args.seeds, args.steps)
    cpu, wall, report = scaled(widths, args.seeds, args.steps)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, widths {widths}, {args.seeds} seeds, {args.steps} steps"
    )
    print(f"{'':28}{'cpu s':>9}{'wall s':>9}")
    print(f"{'plain build + passes':28}{base_cpu:9.1f}{base_wall:9.1f}")
    print(f"{'gradcheck scale (in process)':28}{cpu:9.1f}{wall:9.1f}")
    print(f"ratio (cpu): {cpu / base_cpu:.2f}x; modules followed: {len(report.modules)}")
    print(f"verdict: {report.summary.status}; " + "; ".join(f"{r.role} {r.status}" for r in report.roles))


if __name__ == "__main__":
    main()
