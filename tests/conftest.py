"""Shared fixtures: a CLI runner with separate stdout/stderr, and tiny model factories."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gradcheck_cli.cli import app

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

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
