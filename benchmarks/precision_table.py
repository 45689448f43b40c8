"""Verify `--precision` on fixtures with known number-format pathologies, against plain PyTorch.

Each fixture is a small model file whose layers are built to sit at a known place against the
formats' limits (outputs around 2^-20, around 1e5, an input with a 1e6 outlier, a sum of large
terms that cancel, gradients near 1e-9). gradcheck analyses it with `--precision all`; for every
layer of interest the script recomputes, in plain PyTorch, the share of outputs below the format's
smallest normal and above its largest value, and the relative error of the layer run in the format
(float16/bfloat16: input and weights cast, the layer run in the dtype; fp8: every tensor scaled by
its own power of two, rounded through the fp8 dtype, computed in float32, output rounded), and
prints both beside the verdict.

    python benchmarks/precision_table.py                          # prints the table
    python benchmarks/precision_table.py --write docs/precision.md # replaces the table there
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

os.environ.setdefault("GRADCHECK_IN_PROCESS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gradcheck_cli.records.precision import NUMBER_FORMATS, number_format  # noqa: E402

BATCH = """
def sample_batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 16, generator=g), torch.randn(8, 4, generator=g)
"""

FIXTURES: dict[str, tuple[str, tuple[str, ...]]] = {
    "ranges": (
        """
class Net(nn.Module):
    # tiny: outputs around 2^-20; huge: outputs around 1e5 (rescaled functionally in between)
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.fc1, self.tiny, self.back = nn.Linear(16, 32), nn.Linear(32, 32, bias=False), nn.Linear(32, 32)
        self.huge, self.head = nn.Linear(32, 32, bias=False), nn.Linear(32, 4)
        with torch.no_grad():
            for layer in (self.fc1, self.back, self.head):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) / layer.in_features**0.5)
                layer.bias.zero_()
            self.tiny.weight.copy_(torch.randn(32, 32, generator=g) * 2.0**-20 / 32**0.5 * 2)
            self.huge.weight.copy_(torch.randn(32, 32, generator=g) * 1e5 / 32**0.5 * 2)

    def forward(self, x):
        s = self.tiny(torch.relu(self.fc1(x))) * 2.0**20
        return self.head(self.huge(torch.relu(self.back(s))) * 1e-5)
""",
        ("tiny", "huge"),
    ),
    "outlier": (
        """
class Net(nn.Module):
    # mix sees inputs around 0.1 with one feature at 1e6: a dynamic range of 2^23
    def __init__(self):
        super().__init__()
        self.mix, self.head = nn.Linear(16, 32), nn.Linear(32, 4)

    def forward(self, x):
        x = x * 0.1 + torch.nn.functional.one_hot(torch.zeros(x.shape[0], dtype=torch.long), 16) * 1e6
        return self.head(torch.tanh(self.mix(x) * 1e-6))
""",
        ("mix",),
    ),
    "cancel": (
        """
class Net(nn.Module):
    # diff sees 1000 + noise(0.01) and weights in +w/-w pairs: the 1000s cancel, the noise is the signal
    def __init__(self):
        super().__init__()
        self.diff, self.head = nn.Linear(16, 32, bias=False), nn.Linear(32, 4)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            half = torch.randn(32, 8, generator=g) / 4
            self.diff.weight.copy_(torch.cat([half, -half], dim=1))

    def forward(self, x):
        return self.head(self.diff(1000.0 + 0.01 * x) * 100)
""",
        ("diff",),
    ),
    "tiny-loss": (
        """
class Net(nn.Module):
    # a healthy MLP whose loss is multiplied by 1e-6: gradients near 1e-9
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.head = nn.Linear(16, 32), nn.Linear(32, 32), nn.Linear(32, 4)

    def forward(self, x):
        return self.head(torch.tanh(self.fc2(torch.tanh(self.fc1(x)))))


def loss_fn(output, target):
    return torch.nn.functional.mse_loss(output, target) * 1e-6
""",
        ("fc1", "head"),
    ),
    "healthy": (
        """
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.head = nn.Linear(16, 32), nn.Linear(32, 32), nn.Linear(32, 4)

    def forward(self, x):
        return self.head(torch.tanh(self.fc2(torch.tanh(self.fc1(x)))))
""",
        ("fc1", "head"),
    ),
}


def write(folder: Path, name: str) -> Path:
    source, _ = FIXTURES[name]
    path = folder / f"{name.replace('-', '_')}.py"
    header = "import torch\nfrom torch import nn\n"
    path.write_text(header + textwrap.dedent(source) + BATCH)
    return path


def load(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"fixture_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def captured(path: Path, torch_seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor, nn.Module]]:
    """Plain PyTorch: each named layer's input and output on the fixture's batch (float32)."""
    torch.manual_seed(torch_seed)  # the tool seeds torch before building the model
    module = load(path)
    net, (x, _) = module.Net(), module.sample_batch()
    seen: dict[str, tuple[torch.Tensor, torch.Tensor, nn.Module]] = {}

    def keep(name: str) -> Any:
        def hook(m: nn.Module, args: Any, out: torch.Tensor) -> None:
            seen[name] = (args[0].detach(), out.detach(), m)

        return hook

    handles = [m.register_forward_hook(keep(n)) for n, m in net.named_children()]
    with torch.no_grad():
        net(x)
    for handle in handles:
        handle.remove()
    return seen


def by_hand(module: nn.Module, x: torch.Tensor, fmt_name: str) -> torch.Tensor:
    """The layer run in the format, written out with plain torch calls."""
    fmt = number_format(fmt_name)
    dtype = getattr(torch, fmt.dtype)
    params = dict(module.named_parameters())
    if fmt.tensor_scaled:

        def cast(t: torch.Tensor) -> torch.Tensor:
            amax = t.abs().max()
            scale = 2.0 ** math.floor(math.log2(fmt.max / float(amax))) if amax > 0 else 1.0
            return (t * scale).to(dtype).float() / scale

        with torch.no_grad():
            out = torch.func.functional_call(module, {n: cast(p) for n, p in params.items()}, (cast(x),))
        return cast(out)
    with torch.no_grad():
        return torch.func.functional_call(
            module, {n: p.to(dtype) for n, p in params.items()}, (x.to(dtype),)
        ).float()


def relative_error(low: torch.Tensor, full: torch.Tensor) -> float:
    low = torch.where(torch.isfinite(low), low, torch.zeros(()))
    return float(
        torch.linalg.vector_norm(low.double() - full.double()) / torch.linalg.vector_norm(full.double())
    )


def analyse(path: Path) -> tuple[dict[str, Any], float]:
    from typer.testing import CliRunner

    from gradcheck_cli.run.cli import app

    started = time.perf_counter()
    result = CliRunner().invoke(app, ["analyze", str(path), "--device", "cpu", "--format", "json",
                                      "--batches", "1", "--precision", "all"])  # fmt: skip
    seconds = time.perf_counter() - started
    if result.exit_code not in (0, 1):
        raise SystemExit(f"{path.name}: exit {result.exit_code}\n{result.stderr}")
    return json.loads(result.stdout), seconds


def rows_for(name: str, folder: Path) -> tuple[list[list[str]], list[str]]:
    path = write(folder, name)
    report, seconds = analyse(path)
    layers = captured(path)
    rows: list[list[str]] = []
    for headroom in report["precision"]["formats"]:
        fmt = number_format(headroom["format"])
        scale = headroom["loss_scale"]
        for row in headroom["layers"]:
            if row["name"] not in FIXTURES[name][1]:
                continue
            x, out, module = layers[row["name"]]
            nonzero = out != 0
            under = float(((out.abs() < fmt.min_normal) & nonzero).sum() / nonzero.sum())
            over = float((out.abs() > fmt.max).sum() / nonzero.sum())
            error = relative_error(by_hand(module, x, fmt.name), out)
            rows.append([
                f"`{name}`", f"`{row['name']}`", fmt.name,
                f"{row['activation_underflow']:.1%} / {under:.1%}",
                f"{row['activation_overflow']:.1%} / {over:.1%}",
                f"{row['confirmed_error']:.3g} / {error:.3g}",
                f"{row['grad_error']:.3g} → {row['grad_error_scaled']:.3g}",
                f"{scale['suggested']:g}" if not fmt.tensor_scaled else "per tensor",
                f"**{row['verdict']}**" if row["verdict"] != "fine" else "fine",
            ])  # fmt: skip
    findings = sorted({f"{f['id']} ({f['evidence']['format']})" for f in report["findings"]
                       if f["id"].startswith("precision-")})  # fmt: skip
    summary = (
        f"`{name}`: {seconds:.1f} s for `analyze --precision all`, findings: {', '.join(findings) or 'none'}"
    )
    return rows, [summary]


HEADERS = [
    "fixture", "layer", "format", "outputs < min normal (gradcheck / torch)", "outputs > max (gradcheck / torch)",
    "output error run in the format (gradcheck / torch)", "grad error unscaled → scaled", "loss scale", "verdict",
]  # fmt: skip
BEGIN, END = "<!-- precision-table:begin -->", "<!-- precision-table:end -->"


def table(names: list[str]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            rows, summary = rows_for(name, Path(tmp))
            lines += ["| " + " | ".join(r) + " |" for r in rows]
            notes += summary
    cpu = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    return "\n".join([*lines, "", *(f"- {n}" for n in notes), f"- measured with {cpu}", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", default=",".join(FIXTURES), help="comma-separated fixture names")
    parser.add_argument("--write", type=Path, help="replace the table between the markers in this file")
    args = parser.parse_args()
    assert {f.name for f in NUMBER_FORMATS} == {"bf16", "fp16", "fp8-e4m3", "fp8-e5m2"}
    text = table([n for n in args.fixtures.split(",") if n])
    if args.write is None:
        print(text)
        return
    doc = args.write.read_text()
    head, _, rest = doc.partition(BEGIN)
    _, _, tail = rest.partition(END)
    args.write.write_text(f"{head}{BEGIN}\n{text}{END}{tail}")


if __name__ == "__main__":
    main()
