"""Score gradcheck on the corpus of training failures, each against its healthy twin.

Every case in tests/fixtures/corpus/ trains a small model the way its user does (`fit()`: the
case's own build_optimizer/train_step/scheduler interval), records the ground truth (step,
layer, kind) in plain PyTorch, and saves the last finite checkpoint. gradcheck then sees the
run the three ways it can see training:

  monitor  GradientMonitor(every=1, jsonl=...) in the loop, then `gradcheck report run.jsonl`
  weights  `gradcheck analyze CASE.py:Net(broken=..) --weights ck.pt --versus init`
  steps    `gradcheck analyze CASE.py:Net(broken=..) --weights ck.pt --steps 20` (the model
           file's build_optimizer/train_step: the user's loop where gradcheck supports it)

Per broken case: which modes catch it (a finding at warning or error), whether the kind
(finding id), layer, step and cause are right; per healthy twin: the findings at warning or
error (the goal is none). Lead times: the steps between a spike/first-layer finding and the
truth's step, where the finding's evidence gives one.

    python benchmarks/training_corpus.py                 # all cases, prints the table
    python benchmarks/training_corpus.py --cases nan_log,graph_cut
    python benchmarks/training_corpus.py --write docs/training-corpus.md --json out.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

os.environ.setdefault("GRADCHECK_IN_PROCESS", "1")  # the CLI in this process: no worker start per run

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "fixtures" / "corpus"
sys.path.insert(0, str(CORPUS))
sys.path.insert(0, str(ROOT))

CASES = (
    "nan_log",
    "nan_div",
    "fp16_overflow",
    "relu_lr_jump",
    "zero_grad_forgotten",
    "missing_param",
    "graph_cut",
    "bn_eval",
    "sched_per_batch",
    "accum_undivided",
    "heatmap_head",
    "finetune_head",
    "no_warmup",
    "attn_logit_growth",
)
MODES = ("monitor", "weights", "steps")
RESUME_STEPS = 20


def cli(args: list[str]) -> dict[str, Any]:
    """Run the gradcheck CLI in-process; the JSON document it printed (or the error)."""
    from typer.testing import CliRunner

    from gradcheck_cli.run.cli import app

    result = CliRunner().invoke(app, args)
    try:
        return {"exit": result.exit_code, **json.loads(result.stdout)}
    except json.JSONDecodeError:
        return {"exit": result.exit_code, "error": (result.stdout + result.stderr)[-400:], "findings": []}


def _serious(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in findings if f.get("severity") in ("warning", "error")]


def run_modes(name: str, mod: Any, broken: bool, folder: Path) -> tuple[Any, dict[str, list[dict[str, Any]]]]:
    """Train once (monitor in the loop, checkpoint saved), then the CLI modes: findings per mode."""
    from common import fit

    from gradcheck_cli.monitor.gradient_monitor import GradientMonitor

    log, ck = folder / f"{name}-{broken}.jsonl", folder / f"{name}-{broken}.pt"
    trace = fit(
        mod,
        broken,
        monitor_factory=lambda m: GradientMonitor(m, every=1, jsonl=log, callback=None),
        checkpoint=ck,
    )
    target = f"{CORPUS / (name + '.py')}:Net(broken={broken})"
    report = cli(["report", str(log), "--format", "json", "--fail-on", "never"])
    logged = report.get("logged_findings", [])
    found = {
        "monitor": [*logged, *report.get("trend_findings", [])],
        "weights": cli(["analyze", target, "--weights", str(ck), "--versus", "init", "--format", "json"]),
        "steps": cli(
            ["analyze", target, "--weights", str(ck), "--steps", str(RESUME_STEPS), "--format", "json"]
        ),
    }
    for mode in ("weights", "steps"):
        doc = found[mode]
        found[mode] = doc.get("findings", []) or (
            [{"id": "exit-2", "severity": "error", "layers": [], "message": doc["error"]}]
            if "error" in doc
            else []
        )
    return trace, {mode: _serious(fs) for mode, fs in found.items()}


def _first_by_id(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The monitor logs a finding at every measured step it holds: keep each id's first."""
    seen: dict[str, dict[str, Any]] = {}
    for f in findings:
        seen.setdefault(f["id"], f)
    return list(seen.values())


def _steps_in(finding: dict[str, Any]) -> list[int]:
    """Step numbers a finding states: its logged step, and evidence keys that name a step."""
    out = [finding["step"]] if isinstance(finding.get("step"), int) else []
    for key, value in (finding.get("evidence") or {}).items():
        if "step" in key and isinstance(value, int) and not isinstance(value, bool) and key != "steps":
            out.append(value)
    return out


def _lead(finding: dict[str, Any]) -> int | None:
    for key, value in (finding.get("evidence") or {}).items():
        if (
            ("lead" in key or "before" in key)
            and isinstance(value, (int, float))
            and not isinstance(value, bool)
        ):
            return int(value)
    return None


def score(mod: Any, truth: Any, findings: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    """Caught / kind / layer / step / cause for one mode on a broken case."""
    findings = _first_by_id(findings)
    kinds = [f for f in findings if f["id"] in mod.KIND_IDS]
    causes = [
        f
        for f in findings
        if any(word.lower() in (f["id"] + " " + f.get("message", "")).lower() for word in mod.CAUSE_WORDS)
    ]
    best = kinds + causes  # layer and step are judged on the findings about this failure only
    layer = (
        None
        if truth is None or truth.layer is None
        else any(truth.layer in f.get("layers", ()) for f in best)
    )
    step = None
    if truth is not None and truth.step is not None and mode == "monitor":
        step = any(abs(s - truth.step) <= 1 for f in best for s in _steps_in(f))
    leads = [lead for f in findings if (lead := _lead(f)) is not None]
    return {
        "caught": bool(findings),
        "ids": sorted({f["id"] for f in findings}),
        "kind": bool(kinds),
        "layer": layer,
        "step": step,
        "cause": bool(causes),
        "lead": leads[0] if leads else None,
    }


def run_case(name: str, folder: Path) -> dict[str, Any]:
    mod = importlib.import_module(name)
    started = time.perf_counter()
    trace, broken = run_modes(name, mod, True, folder)
    truth = mod.truth(trace)
    healthy_trace, healthy = run_modes(name, mod, False, folder)
    healthy_truth = mod.truth(healthy_trace)
    return {
        "case": name,
        "doc": (mod.__doc__ or "").strip().splitlines()[0],
        "truth": None if truth is None else vars(truth),
        "healthy_truth_clean": healthy_truth is None,
        "modes": {mode: score(mod, truth, broken[mode], mode) for mode in MODES},
        "healthy": {mode: sorted({f["id"] for f in healthy[mode]}) for mode in MODES},
        "seconds": round(time.perf_counter() - started, 1),
    }


def _mark(value: bool | None) -> str:
    return "n/a" if value is None else ("yes" if value else "no")


def table(results: list[dict[str, Any]]) -> str:
    """The markdown document: the per-failure table, the healthy twins, the lead times."""
    lines = [
        "| failure | truth (step, layer, kind) | mode | caught | kind | layer | step | cause | finding ids |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        t = r["truth"]
        truth = "not reproduced" if t is None else f"{t['step']}, {t['layer'] or '-'}, {t['kind']}"
        for mode in MODES:
            m = r["modes"][mode]
            cells = [
                _mark(m["caught"]),
                _mark(m["kind"]),
                _mark(m["layer"]),
                _mark(m["step"]),
                _mark(m["cause"]),
            ]
            ids = ", ".join(f"`{i}`" for i in m["ids"]) or "-"
            lines.append(f"| {r['case']} | {truth} | {mode} | {' | '.join(cells)} | {ids} |")
    lines += ["", "Healthy twins (findings at warning or error; the goal is none):", ""]
    lines += ["| healthy twin | truth clean | " + " | ".join(MODES) + " |", "| --- | --- | --- | --- | --- |"]
    for r in results:
        cells = [", ".join(f"`{i}`" for i in r["healthy"][mode]) or "none" for mode in MODES]
        lines.append(f"| {r['case']} | {_mark(r['healthy_truth_clean'])} | {' | '.join(cells)} |")
    leads = [
        (r["case"], mode, r["modes"][mode]["lead"])
        for r in results
        for mode in MODES
        if r["modes"][mode]["lead"] is not None
    ]
    lines += ["", "Lead times (steps between the first spike/first-layer finding and the failure):", ""]
    lines += [f"- {case} ({mode}): {lead} steps" for case, mode, lead in leads] or [
        "- none reported by any finding's evidence"
    ]
    return "\n".join(lines) + "\n"


def summary(results: list[dict[str, Any]]) -> str:
    reproduced = [r for r in results if r["truth"] is not None]
    caught = {mode: sum(r["modes"][mode]["caught"] for r in reproduced) for mode in MODES}
    any_mode = sum(any(r["modes"][m]["caught"] for m in MODES) for r in reproduced)
    cause = sum(any(r["modes"][m]["cause"] for m in MODES) for r in reproduced)
    clean = sum(all(not r["healthy"][m] for m in MODES) for r in results)
    per_mode = ", ".join(f"{mode} {caught[mode]}" for mode in MODES)
    return (
        f"{len(reproduced)} of {len(results)} failures reproduced; caught by any mode: {any_mode} "
        f"({per_mode}); cause named: {cause}; healthy twins with no warning or error in any mode: "
        f"{clean} of {len(results)}."
    )


HEADER = """# The training-failure corpus

Generated by `python benchmarks/training_corpus.py --write docs/training-corpus.md` (do not edit
by hand). Each case is a small CPU model in `tests/fixtures/corpus/`, trained by its user's loop
(`fit()` in `common.py`: the case's own `build_optimizer`, `train_step` and scheduler interval)
with its ground truth (step, layer, kind) computed in plain PyTorch from that run, and a healthy
twin trained by the same loop with the fix. gradcheck sees each run three ways: `monitor`
(`GradientMonitor(every=1)` in the loop, then `gradcheck report run.jsonl`), `weights`
(`--weights ck.pt --versus init` on the last finite checkpoint) and `steps` (`--weights ck.pt
--steps {resume}` from that checkpoint, with the model file's optimizer and step).

Columns: **caught**: a finding at warning or error; **kind**: a finding id of the failure's kind;
**layer**: the truth's layer among that finding's layers (n/a when the failure has no one layer);
**step**: the monitor's finding at the truth's step, within one (n/a for the checkpoint modes);
**cause**: a finding that names the cause (its id or message), not only a symptom.

"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--write", type=Path, help="write the markdown document here")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases.split(","):
            results.append(run_case(name, Path(tmp)))
            print(f"{name}: {results[-1]['seconds']} s", file=sys.stderr)
    text = HEADER.format(resume=RESUME_STEPS) + summary(results) + "\n\n" + table(results)
    print(text)
    if args.write:
        args.write.write_text(text, encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
