"""Suppressed findings are never silent: an inline `# gradcheck: ignore[ID]`, `rules: ID: off`
and `ignore:` all keep the finding under "ignored", counted, in every format."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

MODEL = """
import torch
from torch import nn


class Deep(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(16, 32)
        self.hidden = nn.ModuleList(nn.Linear(32, 32) for _ in range(10)){comment}
        self.out = nn.Linear(32, 4)

    def forward(self, x):
        x = torch.sigmoid(self.inp(x))
        for layer in self.hidden:
            x = torch.sigmoid(layer(x))
        return self.out(x)
"""


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    os.chdir(tmp_path)
    return tmp_path


def _write(folder: Path, comment: str) -> str:
    (folder / "deep.py").write_text(MODEL.format(comment=comment))
    return "deep.py"


def test_inline_comment_on_the_flagged_line_suppresses_and_is_listed(cli, model_dir: Path) -> None:
    target = _write(model_dir, "  # gradcheck: ignore[vanishing-gradients]")
    plain = cli("analyze", target, "--input", "8x16", "--batches", "1", "--format", "json")
    assert plain.exit_code == 0, plain
    doc = json.loads(plain.stdout)
    assert doc["summary"]["ignored"] == 1 and not doc["findings"]
    (ignored,) = doc["ignored"]
    assert ignored["id"] == "vanishing-gradients"
    assert ignored["reason"] == "# gradcheck: ignore at deep.py:10"
    assert "1 ignored" in plain.stderr  # the verdict line
    text = cli("analyze", target, "--input", "8x16", "--batches", "1").stdout
    assert "1 ignored" in text and "IGNORED" in text and "nothing to fix" not in text


def test_comment_for_another_id_or_on_another_line_does_not_suppress(cli, model_dir: Path) -> None:
    target = _write(model_dir, "  # gradcheck: ignore[dead-units]")
    result = cli("analyze", target, "--input", "8x16", "--batches", "1", "--format", "json")
    assert result.exit_code == 1, result
    assert json.loads(result.stdout)["summary"]["ignored"] == 0


def test_rules_off_unquoted_in_yaml_is_accepted_and_reported_as_ignored(cli, model_dir: Path) -> None:
    target = _write(model_dir, "")
    (model_dir / "gradcheck.yaml").write_text(
        f"target: {target}\ninput: 8x16\nbatches: 1\nrules:\n  vanishing-gradients: off\n"
    )
    result = cli("analyze", "--format", "markdown")
    assert result.exit_code == 0, result
    assert "1 ignored" in result.stdout and "rules: vanishing-gradients: off" in result.stdout
