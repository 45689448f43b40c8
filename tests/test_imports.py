"""The fast commands never import torch (a fresh interpreter per command, as a user runs them)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import json, sys
from gradcheck_cli.cli import main
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
    [("--help",), ("--version",), ("zoo",), ("explain", "vanishing-gradients"), ("analyze", "--help")],
)
def test_fast_commands_leave_torch_unimported(argv: tuple[str, ...]) -> None:
    result = run_in_fresh_interpreter(*argv)
    assert result["code"] == 0
    assert result["stdout"], "the command printed nothing"
    assert "torch" not in result["heavy"]  # type: ignore[operator]


def test_the_check_would_see_torch_if_it_were_imported() -> None:
    # The same harness, on a path that must load torch: a builtin analysis.
    result = run_in_fresh_interpreter("analyze", "builtin:tanh-mlp", "--format", "json", "--batches", "1")
    assert "torch" in result["heavy"]  # type: ignore[operator]
