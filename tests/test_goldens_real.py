"""Goldens of real runs on builtins (fixed seeds, one thread): the terminal report at 80 columns,
Markdown and JUnit. Measured floats are masked digit by digit (widths kept, so the layout is still
checked) and bar glyphs made uniform, so a different BLAS cannot flip a golden; counts, names and
every word stay as rendered. Reviewed by eye for grammar when written."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from gradcheck_cli.cli import app

FLOAT = re.compile(r"\d+\.\d+(?:e[+-]?\d+)?|\d+e[+-]\d+")
BAR = re.compile(r"[█▉▊▋▌▍▎▏▁▂▃▄▅▆▇]")
RUNS = {
    "sigmoid-mlp": ["builtin:sigmoid-mlp", "--arch-opt", "depth=6"],
    "vanilla-rnn": ["builtin:vanilla-rnn", "--arch-opt", "seq_len=40"],
    "bn-cnn": ["builtin:bn-cnn", "--arch-opt", "depth=3"],
}


def mask(text: str) -> str:
    head, sep, body = text.partition("\n") if text.startswith("<?xml") else ("", "", text)
    body = FLOAT.sub(lambda m: re.sub(r"\d", "0", m.group()), body)
    return head + sep + BAR.sub("█", body)


def _run(*args: str) -> str:
    result = CliRunner().invoke(
        app, ["analyze", *args, "--batches", "2", "--device", "cpu"], env={"COLUMNS": "80", "NO_COLOR": "1"}
    )
    assert result.exit_code in (0, 1), result.output
    return mask(result.stdout)


@pytest.mark.parametrize("name", list(RUNS))
def test_terminal_report_at_80_columns(name: str, golden) -> None:
    text = _run(*RUNS[name])
    assert max(len(line) for line in text.splitlines()) <= 80
    golden(f"terminal_{name}.txt", text)


@pytest.mark.parametrize("fmt", ["markdown", "junit"])
def test_markdown_and_junit_of_a_real_run(fmt: str, golden) -> None:
    golden(
        f"real_sigmoid-mlp.{'md' if fmt == 'markdown' else 'xml'}",
        _run(*RUNS["sigmoid-mlp"], "--format", fmt),
    )
