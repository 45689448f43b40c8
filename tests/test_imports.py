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


# --- what the command line leaves out (issue 24: start-up near a plain script) ---------------------

ENTRY_PROBE = """
import json, sys
from gradcheck_cli.run.entry import main
sys.argv = ["gradcheck", *sys.argv[1:]]
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code or 0
watched = ("torch", "typer", "click", "rich", "pydantic", "markdown_it", "pygments", "attr", "yaml",
           "gradcheck_cli.judge.rules", "gradcheck_cli.config.options")
print(json.dumps({"code": code, "loaded": [m for m in watched if m in sys.modules]}), file=sys.stderr)
"""


def run_entry(*argv: str, env: dict[str, str] | None = None) -> dict[str, object]:
    """The installed `gradcheck` script's path (`run.entry`) in a fresh interpreter."""
    import os

    done = subprocess.run(
        [sys.executable, "-c", ENTRY_PROBE, *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )
    result: dict[str, object] = json.loads(done.stderr.strip().splitlines()[-1])
    result["stdout"] = done.stdout
    return result


def test_version_imports_no_command_line_library() -> None:
    result = run_entry("--version")
    assert result["code"] == 0 and str(result["stdout"]).startswith("gradcheck ")
    assert result["loaded"] == []


@pytest.mark.parametrize("argv", [("--help",), ("analyze", "--help"), ("-h",), ()])
def test_help_leaves_out_the_markdown_and_traceback_stack(argv: tuple[str, ...]) -> None:
    """typer's help formatter imports rich.markdown (markdown_it, pygments) and rich.traceback
    (rich.pretty, attrs) at module level; `run.entry` keeps both out, and the text is the same."""
    result = run_entry(*argv)
    plain = run_in_fresh_interpreter(*argv)
    assert result["stdout"] == plain["stdout"] and "gradcheck" in str(result["stdout"])
    assert result["code"] == plain["code"]
    for heavy in ("markdown_it", "pygments", "attr", "pydantic", "torch"):
        assert heavy not in result["loaded"], heavy  # type: ignore[operator]


def test_the_supervisor_imports_only_what_it_uses() -> None:
    """`gradcheck analyze` in its own process (the worker is another): no torch, no pydantic (typer's
    option conversion), no rule registry, no rich (output is not a terminal)."""
    result = run_entry(
        "analyze", "builtin:tanh-mlp", "--batches", "1", "--format", "json", env={"GRADCHECK_IN_PROCESS": "0"}
    )
    assert result["code"] == 1 and json.loads(str(result["stdout"]))["summary"]["errors"] >= 1
    loaded = set(result["loaded"])  # type: ignore[call-overload]
    assert not loaded & {"torch", "pydantic", "rich", "markdown_it", "gradcheck_cli.judge.rules"}, loaded
    assert {"typer", "gradcheck_cli.config.options"} <= loaded  # the check sees what is imported
