"""The architecture sweep: every family and pattern fixture through the real CLI, at batch 2 and 16.

    python benchmarks/zoo_sweep.py                 # run, print the table
    python benchmarks/zoo_sweep.py --write         # run, and write docs/zoo-sweep.md
    python benchmarks/zoo_sweep.py --check         # run; exit 2 if docs/zoo-sweep.md says otherwise
    python benchmarks/zoo_sweep.py --only resnet --batch-sizes 2
    python benchmarks/zoo_sweep.py --write --only levit gc_resnet   # rerun these, keep the other rows

Each fixture is a model file written here in the style of one architecture family or design
pattern (tests/fixtures/families/, tests/fixtures/patterns/), at its realistic default init and
sized for a CPU. A family file declares PATTERN, INPUTS (per-sample --input specs, the batch
size is put in front; empty: the file's sample_batch() or the inferred input, with --batch-size)
and EXPECT ("healthy", or the finding id its broken twin must raise); pattern files that do not
declare them are described in PATTERNS below.

Each run is `python -m gradcheck_cli analyze FILE --input B x SPEC ... --device cpu --format json`
in a subprocess: the same command a user types. A healthy fixture passes when it exits 0 (warnings
are listed, they do not fail a CI gate); a broken twin passes when it exits 1 with its id among
the errors; the script exits 1 when any fixture does not pass. The time column is the wall time of the whole command (interpreter and torch import
included); --check compares everything but the times.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_DIRS = (ROOT / "tests" / "fixtures" / "families", ROOT / "tests" / "fixtures" / "patterns")
DOC = ROOT / "docs" / "zoo-sweep.md"
BATCH_SIZES = (2, 16)
HEALTHY = "healthy"

IMAGES = ("3x32x32",)
PATTERNS: dict[str, tuple[str, tuple[str, ...], str]] = {
    # tests/fixtures/patterns/ (issue 13's design patterns): file stem -> (pattern, inputs, expected),
    # read off each file's docstring ("Healthy: must exit 0", "Must exit 1 (...)", "Input: ...").
    "cnn_lstm": (
        "CNN per frame + nn.LSTM stepped in a Python loop (hooks called with None)",
        ("8x3x16x16",),
        HEALTHY,
    ),
    "convnext_layerscale": ("ConvNeXt blocks with layer-scale gamma 1e-6", IMAGES, HEALTHY),
    "encoder_decoder": (
        "encoder_layer_N / decoder_layer_N stacks (roles from index-like names)",
        ("int:16:100",),
        HEALTHY,
    ),
    "nf_resnet": ("normalizer-free ResNet, SkipInit gain 0", IMAGES, HEALTHY),
    "rezero": ("ReZero: x + alpha f(x), alpha = 0, no normalisation", ("64",), HEALTHY),
    "se_mobilenet": ("squeeze-excite gates, zero-init last BatchNorm", IMAGES, HEALTHY),
    "se_resnet_zero": ("squeeze-excite fed by a zero-gain BatchNorm (a closed gate)", IMAGES, HEALTHY),
    "swin_relpos": ("relative-position-bias MLP: Linear on 4-D + in-place ReLU (hook miss)", IMAGES, HEALTHY),
    "tiny_head": ("classifier head initialised at 1e-3 scale", IMAGES, HEALTHY),
    "vit_zero_head": ("ViT with a zero-initialised head", IMAGES, HEALTHY),
    "zero_init_resnet": ("CIFAR ResNet with zero_init_residual", IMAGES, HEALTHY),
    "plain_deep_stack": (
        "16-layer ReLU MLP, std 0.05, no normalisation or skips",
        ("64",),
        "vanishing-gradients",
    ),
    "stuck_gate": ("zero gain behind a zero-initialised weight", ("64",), "vanishing-gradients"),
    "zero_zero_head": ("two zero-initialised Linears in a row", ("32",), "vanishing-gradients"),
    "tanh_saturated_stack": ("tanh stack saturated in every layer", ("32",), "saturated-activations"),
    "sigmoid_regressor": ("sigmoid regressor on unstandardised features", (), "saturated-activations"),
}


@dataclass(frozen=True, slots=True)
class Fixture:
    path: Path
    pattern: str
    inputs: tuple[str, ...]
    expect: str

    @property
    def name(self) -> str:
        return f"{self.path.parent.name}/{self.path.stem}"


@dataclass(frozen=True, slots=True)
class Outcome:
    fixture: Fixture
    batch: int
    exit_code: int
    errors: tuple[str, ...]
    warnings: tuple[str, ...]
    seconds: float
    problem: str = ""
    """The first line of stderr when the run could not produce a report."""

    @property
    def passed(self) -> bool:
        if self.fixture.expect == HEALTHY:
            return self.exit_code == 0
        return self.exit_code == 1 and self.fixture.expect in self.errors


def discover(only: Iterable[str] = ()) -> list[Fixture]:
    wanted = set(only)
    found = []
    for folder in FIXTURE_DIRS:
        for path in sorted(folder.glob("*.py")) if folder.is_dir() else ():
            fixture = _describe(path)
            if fixture is not None and (not wanted or path.stem in wanted):
                found.append(fixture)
    return found


def _describe(path: Path) -> Fixture | None:
    """PATTERN / INPUTS / EXPECT read from the file without importing it (or from PATTERNS)."""
    constants = {}
    for node in ast.parse(path.read_text()).body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
        if isinstance(target, ast.Name) and target.id in ("PATTERN", "INPUTS", "EXPECT"):
            constants[target.id] = ast.literal_eval(node.value)  # type: ignore[union-attr]
    if len(constants) == 3:
        return Fixture(path, constants["PATTERN"], tuple(constants["INPUTS"]), constants["EXPECT"])
    if path.stem in PATTERNS:
        pattern, inputs, expect = PATTERNS[path.stem]
        return Fixture(path, pattern, inputs, expect)
    return None


def batched(spec: str, batch: int) -> str:
    """A per-sample spec with the batch size in front: '3x32x32' -> '16x3x32x32', 'int:32:1000' ->
    'int:16x32:1000'."""
    if spec.startswith("int:"):
        _, shape, high = spec.split(":")
        return f"int:{batch}x{shape}:{high}"
    kind, sep, rest = spec.partition(":") if spec.startswith("float:") else ("", "", spec)
    return f"{kind}{sep}{batch}x{rest}"


def command(fixture: Fixture, batch: int) -> list[str]:
    """The CLI arguments after `gradcheck`: what a user would type for this fixture."""
    args = ["analyze", str(fixture.path)]
    for spec in fixture.inputs:
        args += ["--input", batched(spec, batch)]
    if not fixture.inputs:  # the file's sample_batch() (or inference) gives the input
        args += ["--batch-size", str(batch)]
    return [*args, "--device", "cpu", "--format", "json"]


def run_one(fixture: Fixture, batch: int) -> Outcome:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NO_COLOR": "1"}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "gradcheck_cli", *command(fixture, batch)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    seconds = time.perf_counter() - started
    return outcome_of(fixture, batch, done.returncode, done.stdout, done.stderr, seconds)


def outcome_of(fixture: Fixture, batch: int, code: int, stdout: str, stderr: str, seconds: float) -> Outcome:
    try:
        findings = json.loads(stdout)["findings"] if code in (0, 1) else []
    except (json.JSONDecodeError, KeyError):
        findings, code = [], code if code not in (0, 1) else 3
    ids = {
        level: tuple(sorted({f["id"] for f in findings if f["severity"] == level}))
        for level in ("error", "warning")
    }
    problem = "" if code in (0, 1) else next((ln for ln in stderr.splitlines() if ln.strip()), "no output")
    return Outcome(fixture, batch, code, ids["error"], ids["warning"], seconds, problem)


def sweep(fixtures: list[Fixture], sizes: Iterable[int], jobs: int) -> list[Outcome]:
    tasks = [(f, b) for f in fixtures for b in sizes]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(lambda task: run_one(*task), tasks))


# ---------------------------------------------------------------------------- the table


HEAD = "| model | pattern | expected | batch | exit | errors | warnings | time | verdict |"


def table(outcomes: list[Outcome], with_times: bool = True) -> str:
    return "\n".join(
        [HEAD, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |", *row_lines(outcomes, with_times)]
    )


def row_lines(outcomes: list[Outcome], with_times: bool = True) -> list[str]:
    rows = []
    for o in outcomes:
        seconds = f"{o.seconds:.1f} s" if with_times else ""
        errors = ", ".join(o.errors) or ("—" if not o.problem else f"exit {o.exit_code}: {o.problem[:60]}")
        verdict = "pass" if o.passed else "**FAIL**"
        batch = str(o.batch) if o.fixture.inputs else f"{o.batch}*"
        rows.append(
            f"| `{o.fixture.name}` | {o.fixture.pattern} | {o.fixture.expect} | {batch} | {o.exit_code} "
            f"| {errors} | {', '.join(o.warnings) or '—'} | {seconds} | {verdict} |"
        )
    return rows


def summary(outcomes: list[Outcome]) -> str:
    return summary_of([(o.fixture.name, o.fixture.expect, o.batch, o.passed) for o in outcomes])


def summary_of(results: list[tuple[str, str, int, bool]]) -> str:
    """(fixture name, expected, batch, passed) per run: the counts at the top of the document."""
    healthy: dict[str, list[bool]] = {}
    broken: dict[str, list[bool]] = {}
    for name, expect, _, passed in results:
        (healthy if expect == HEALTHY else broken).setdefault(name, []).append(passed)
    clean = [name for name, runs in healthy.items() if all(runs)]
    caught = [name for name, runs in broken.items() if all(runs)]
    sizes = sorted({batch for _, _, batch, _ in results})
    lines = [
        f"- healthy fixtures exiting 0 at every batch size ({', '.join(map(str, sizes))}): "
        f"**{len(clean)} of {len(healthy)}**",
        f"- broken twins exiting 1 with their finding at every batch size: **{len(caught)} of {len(broken)}**",
    ]
    failing = [name for name in (*healthy, *broken) if name not in clean and name not in caught]
    if failing:
        lines.append(f"- not yet: {', '.join(f'`{name}`' for name in failing)}")
    return "\n".join(lines)


def merged(outcomes: list[Outcome], fixtures: list[Fixture], sizes: list[int]) -> str:
    """The document with the rows of `outcomes` replaced (or added) and every other fixture's rows
    kept from the current file: `--write --only NAME` reruns some fixtures, not all."""
    kept: dict[tuple[str, str], str] = {}
    for line in DOC.read_text().splitlines() if DOC.is_file() else ():
        cells = line.split(" | ")
        if line.startswith("| `") and len(cells) == 9:
            kept[(cells[0].strip("| `"), cells[3])] = line
    fresh = {
        (o.fixture.name, _batch_cell(o)): line for o, line in zip(outcomes, row_lines(outcomes), strict=True)
    }
    lines, results = [], []
    for fixture in fixtures:
        for batch in sizes:
            key = (fixture.name, f"{batch}" if fixture.inputs else f"{batch}*")
            line = fresh.get(key) or kept.get(key)
            if line is not None:
                lines.append(line)
                results.append((fixture.name, fixture.expect, batch, line.endswith("| pass |")))
    rows = "\n".join([HEAD, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |", *lines])
    return _preamble() + f"{summary_of(results)}\n\n{rows}\n"


def _batch_cell(o: Outcome) -> str:
    return str(o.batch) if o.fixture.inputs else f"{o.batch}*"


def document(outcomes: list[Outcome]) -> str:
    return _preamble() + f"{summary(outcomes)}\n\n{table(outcomes)}\n"


def _preamble() -> str:
    return (
        "# Architecture sweep\n\n"
        "Generated by `python benchmarks/zoo_sweep.py --write` (do not edit by hand; "
        "`--check` fails when this file and a fresh run disagree on anything but the times).\n"
        "Every fixture is a model file written here in the style of one architecture family or design\n"
        "pattern, at its realistic default init and sized for a CPU, run through the real CLI:\n"
        "`gradcheck analyze FILE --input BxSPEC ... --device cpu --format json`. A healthy fixture\n"
        "passes when it exits 0 (warnings are listed but do not fail a gate); a broken twin passes\n"
        "when it exits 1 with the expected finding among its errors. Times are wall-clock seconds of\n"
        "the whole command on the machine that wrote the file (interpreter and torch import included).\n"
        "A batch marked * is the file's own sample_batch() (its size is fixed there; --batch-size is passed\n"
        "but applies to inferred inputs only).\n\n"
    )


def _without_times(text: str) -> str:
    """The document with the time column blanked, for --check."""
    rows = []
    for line in text.splitlines():
        cells = line.split(" | ")
        if line.startswith("| `") and len(cells) == 9:
            cells[7] = ""
        rows.append(" | ".join(cells))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--write", action="store_true", help=f"write {DOC.relative_to(ROOT)}")
    parser.add_argument("--check", action="store_true", help=f"fail when {DOC.relative_to(ROOT)} is stale")
    parser.add_argument("--only", nargs="*", default=(), help="fixture file stems to run")
    parser.add_argument("--batch-sizes", default=",".join(map(str, BATCH_SIZES)))
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (default 1)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    outcomes = sweep(discover(args.only), sizes, args.jobs)
    text = merged(outcomes, discover(), sizes) if args.only and args.write else document(outcomes)
    print(text)
    if args.write:
        DOC.write_text(text)
    if args.check and (not DOC.is_file() or _without_times(DOC.read_text()) != _without_times(text)):
        print(f"{DOC.relative_to(ROOT)} is stale: run benchmarks/zoo_sweep.py --write", file=sys.stderr)
        return 2
    return 0 if all(o.passed for o in outcomes) or args.write else 1


if __name__ == "__main__":
    raise SystemExit(main())
