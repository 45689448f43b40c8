"""Shared fixtures: a CLI runner with separate stdout/stderr, and tiny model factories."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gradcheck_cli.run.cli import app

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
# The CLI runs each analysis in a worker process; tests that are not about that isolation run it
# in the test's own process (a torch import saved per run). tests/test_hostile_process.py clears
# this to exercise the supervised path, which is the default everywhere else.
os.environ.setdefault("GRADCHECK_IN_PROCESS", "1")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _restore_process_state() -> Iterator[None]:
    """User model files put their folder on sys.path and may chdir: undo it after each test."""
    path, cwd = list(sys.path), os.getcwd()
    yield
    sys.path[:] = path
    os.chdir(cwd)


class CliResult:
    def __init__(self, exit_code: int, stdout: str, stderr: str, exception: BaseException | None) -> None:
        self.exit_code, self.stdout, self.stderr, self.exception = exit_code, stdout, stderr, exception

    def __repr__(self) -> str:
        return (
            f"CliResult(exit={self.exit_code}, stdout={self.stdout[-800:]!r}, stderr={self.stderr[-800:]!r})"
        )


def run_cli(*args: str) -> CliResult:
    result = CliRunner().invoke(app, list(args))
    exception = result.exception if not isinstance(result.exception, SystemExit) else None
    return CliResult(result.exit_code, result.stdout, result.stderr, exception)


@pytest.fixture
def cli():
    return run_cli


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens", action="store_true", help="Rewrite tests/golden/* from the renderers."
    )


@pytest.fixture
def golden(request: pytest.FixtureRequest):
    """golden(name, text): compare with tests/golden/NAME, or rewrite it under --update-goldens."""

    def check(name: str, text: str) -> None:
        path = ROOT / "tests" / "golden" / name
        if request.config.getoption("--update-goldens"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        assert path.is_file(), f"no golden {path}; run pytest --update-goldens"
        assert text == path.read_text(), (
            f"{name} differs from its golden; rerun with --update-goldens if intended"
        )

    return check
