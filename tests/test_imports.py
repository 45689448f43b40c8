"""The fast commands never import torch (a fresh interpreter per command, as a user runs them)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import json, sys
from gradcheck_cli.run.cli import main
sys.argv = ["gradcheck", *sys.argv[1:]]
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code or 0
heavy = sorted(m for m in ("torch", "numpy", "yaml") if m in sys.modules)
print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
"""


def run_in_fresh_interpreter(*argv: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=60)
    result: dict[str, object] = json.loads(done.stderr.strip().splitlines()[-1])
    result["stdout"] = done.stdout
    return result


@pytest.mark.parametrize(
    "argv",
    [
        ("--help",),
        ("--version",),
        ("zoo",),
        ("explain", "vanishing-gradients"),
        ("explain", "gradient-trend"),
        ("analyze", "--help"),
        ("report", "--help"),
        ("scale", "--help"),
        ("explain", "width-exponent"),
    ],
)
def test_fast_commands_leave_torch_unimported(argv: tuple[str, ...]) -> None:
    result = run_in_fresh_interpreter(*argv)
    assert result["code"] == 0
    assert result["stdout"], "the command printed nothing"
    assert "torch" not in result["heavy"]  # type: ignore[operator]


MONITOR_LINE = {
    "step": 0,
    "seconds": 0.01,
    "model": {"class": "Net"},
    "layers": [
        {
            "name": "fc",
            "type": "Linear",
            "index": 0,
            "grad_norm": 0.1,
            "weight_norm": 1.0,
            "grad_weight_ratio": 0.1,
            "zero_grad_fraction": 0.0,
            "nonfinite": 0,
            "status": "ok",
        }
    ],
    "findings": [],
    "loss": 1.0,
    "activations": [],
}


@pytest.mark.parametrize("fmt", ["rich", "markdown", "html", "json"])
def test_report_renders_a_run_without_torch(fmt: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "run.jsonl"
    run.write_text("\n".join(json.dumps({**MONITOR_LINE, "step": s}) for s in range(0, 50, 10)) + "\n")
    result = run_in_fresh_interpreter("report", str(run), "--format", fmt)
    assert result["code"] == 0 and "fc" in str(result["stdout"])
    assert "torch" not in result["heavy"]  # type: ignore[operator]


def test_the_check_would_see_torch_if_it_were_imported() -> None:
    # The same harness, on a path that must load torch: a builtin analysis.
    result = run_in_fresh_interpreter("analyze", "builtin:tanh-mlp", "--format", "json", "--batches", "1")
    assert "torch" in result["heavy"]  # type: ignore[operator]
