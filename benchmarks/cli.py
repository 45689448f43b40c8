"""End-to-end cost of the command line, against a plain Python script doing the same work.

--help      wall time of `gradcheck --help` (median of fresh processes)
analyze     wall time of `gradcheck analyze reference_models.py:NAME() --input ...` against
            a plain script that imports torch, builds the same model and runs the same
            forward/backward passes with the same loss (runs alternate; medians)
per layer   `run.seconds` of the JSON report divided by depth, for tanh MLPs of 100 to 1000
            layers (flat means the probe scales linearly)
--gpt2      one GPT-2-small-sized analysis (124M parameters): wall time and peak RSS

  python benchmarks/cli.py                     # help, analyze (cnn, transformer, mlp), per layer
  python benchmarks/cli.py --gpt2              # adds the 124M-parameter analysis (minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = HERE / "reference_models.py"
GRADCHECK = shutil.which("gradcheck") or str(Path(sys.executable).with_name("gradcheck"))
CASES = {
    "cnn": ("cnn_module()", "8x3x64x64"),
    "transformer": ("transformer_module()", "int:8x128:1000"),
    "mlp": ("mlp_module()", "64x256"),
}
LOSSES = {
    "ce": "F.cross_entropy(out.flatten(0, -2), torch.randint(0, out.shape[-1], out.shape[:-1], generator=g).flatten())",
    "mse": "F.mse_loss(out, torch.randn(out.shape, generator=g))",
    "sum": "out.float().sum()",
}
PLAIN = """
import sys
import torch
import torch.nn.functional as F
sys.path.insert(0, {here!r})
import reference_models
torch.manual_seed(0)
model = reference_models.{call}
g = torch.Generator().manual_seed(0)
for _ in range({batches}):
    x = {make_input}
    model.zero_grad(set_to_none=True)
    out = model(x)
    {loss}.backward()
print("done")
"""


def wall(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return time.perf_counter() - start, done.stdout


def analyze_command(call: str, spec: str, batches: int) -> list[str]:
    target = f"{MODELS}:{call}"
    return [GRADCHECK, "analyze", target, "--input", spec, "--batches", str(batches), "--format", "json"]


def input_expr(spec: str) -> str:
    if spec.startswith("int:"):
        _, shape, high = spec.split(":")
        return f"torch.randint(0, {high}, ({shape.replace('x', ', ')},), generator=g)"
    return f"torch.randn({spec.replace('x', ', ')}, generator=g)"


def plain_script(call: str, spec: str, batches: int, loss: str) -> str:
    code = PLAIN.format(
        here=str(HERE), call=call, batches=batches, make_input=input_expr(spec), loss=LOSSES[loss]
    )
    path = Path(tempfile.gettempdir()) / f"gradcheck_plain_{call.split('(')[0]}.py"
    path.write_text(code)
    return str(path)


def help_time(runs: int) -> float:
    return statistics.median(wall([GRADCHECK, "--help"])[0] for _ in range(runs))


def analyze_vs_plain(name: str, runs: int, batches: int) -> tuple[float, float]:
    call, spec = CASES[name]
    command = analyze_command(call, spec, batches)
    first, out = wall(command)  # also warms the file cache for both sides
    plain = [sys.executable, plain_script(call, spec, batches, json.loads(out)["run"]["loss"])]
    wall(plain)
    ours, theirs = [], []
    for _ in range(runs):
        ours.append(wall(command)[0])
        theirs.append(wall(plain)[0])
    return statistics.median(ours), statistics.median(theirs)


def per_layer(depths: list[int], batches: int) -> dict[int, float]:
    out = {}
    for depth in depths:
        command = analyze_command(f"residual_mlp_module(depth={depth}, width=64)", "32x64", batches)
        seconds = [json.loads(wall(command)[1])["run"]["seconds"] for _ in range(3)]
        out[depth] = statistics.median(seconds) / depth
    return out


def gpt2(batches: int) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one GPT-2-small-sized analysis, via GNU time."""
    command = analyze_command("gpt2_module()", "int:2x256:50257", batches)
    report = Path(tempfile.gettempdir()) / "gradcheck_gpt2.json"
    timed = ["/usr/bin/time", "-f", "%e %M", *command, "--output", str(report)]
    done = subprocess.run(timed, capture_output=True, text=True, cwd=tempfile.gettempdir())
    seconds, kib = done.stderr.strip().splitlines()[-1].split()
    summary = json.loads(report.read_text())
    print(
        f"  gpt2 report: {summary['model']['parameters'] / 1e6:.1f}M parameters, {summary['summary']}, "
        f"run.seconds {summary['run']['seconds']:.1f}"
    )
    return float(seconds), float(kib) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="alternating runs per comparison")
    parser.add_argument("--batches", type=int, default=3, help="batches per analysis (gradcheck's default)")
    parser.add_argument("--models", default="cnn,transformer,mlp")
    parser.add_argument("--depths", default="100,300,1000")
    parser.add_argument("--gpt2", action="store_true", help="also analyse the 124M-parameter GPT-2-small")
    args = parser.parse_args()
    print(f"gradcheck --help: {help_time(max(args.runs, 5)):.3f} s (median)")
    for name in filter(None, args.models.split(",")):
        ours, theirs = analyze_vs_plain(name, args.runs, args.batches)
        print(f"analyze {name:<12} {ours:6.2f} s   plain script {theirs:6.2f} s   ratio {ours / theirs:.3f}x")
    layers = per_layer([int(d) for d in args.depths.split(",")], args.batches)
    spread = max(layers.values()) / min(layers.values())
    cells = "  ".join(f"{d} layers {t * 1e3:.2f} ms" for d, t in layers.items())
    print(f"time per layer: {cells}   max/min {spread:.2f}x")
    if args.gpt2:
        seconds, mib = gpt2(args.batches)
        print(f"analyze gpt2 (124M): {seconds:.1f} s wall, peak RSS {mib:.0f} MiB")


if __name__ == "__main__":
    main()
