"""The CI files work as written: the pre-commit hook definition, run end to end by pre-commit
itself (try-repo on this checkout, and the example config), installing nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.skipif(
    shutil.which("git") is None or not (BIN / "pre-commit").exists(), reason="needs git and pre-commit"
)

HEALTHY = "target: builtin:residual-mlp\narch-opt: {depth: 3}\nbatches: 1\ndevice: cpu\n"
SICK = "target: builtin:sigmoid-mlp\narch-opt: {depth: 8}\nbatches: 1\ndevice: cpu\n"


def _repo(tmp_path: Path, config: str) -> Path:
    repo = tmp_path / "models"
    repo.mkdir()
    (repo / "gradcheck.yaml").write_text(config)
    shutil.copy(ROOT / "examples" / "ci" / "pre-commit-config.yaml", repo / ".pre-commit-config.yaml")
    git = ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "models"], cwd=repo, check=True)
    return repo


def _pre_commit(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env["PRE_COMMIT_HOME"] = str(repo.parent / "pre-commit-home")
    return subprocess.run(
        [str(BIN / "pre-commit"), *args], cwd=repo, env=env, capture_output=True, text=True, timeout=300
    )


def test_hook_definition_passes_on_a_healthy_model_via_try_repo(tmp_path: Path) -> None:
    repo = _repo(tmp_path, HEALTHY)
    result = _pre_commit(repo, "try-repo", str(ROOT), "gradcheck", "--all-files")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "gradcheck (gradient flow)" in result.stdout and "Passed" in result.stdout


def test_example_config_fails_the_commit_on_a_vanishing_model(tmp_path: Path) -> None:
    repo = _repo(tmp_path, SICK)
    result = _pre_commit(repo, "run", "--all-files")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Failed" in result.stdout and "vanishing-gradients" in result.stdout
