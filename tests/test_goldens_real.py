"""Goldens of real runs on builtins (fixed seeds, one thread): the terminal report at 80 columns,
Markdown and JUnit. Measured floats and bar lengths are masked (see `mask`); counts, names and
every word stay as rendered. Reviewed by eye for grammar when written."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from gradcheck_cli.run.cli import app

FLOAT = re.compile(r"\d+\.\d+(?:e[+-]?\d+)?|\d+e[+-]\d+")
BAR = re.compile(r"[█▉▊▋▌▍▎▏▁▂▃▄▅▆▇]")
RUNS = {
    "sigmoid-mlp": ["builtin:sigmoid-mlp", "--arch-opt", "depth=6"],
    "vanilla-rnn": ["builtin:vanilla-rnn", "--arch-opt", "seq_len=40"],
    "bn-cnn": ["builtin:bn-cnn", "--arch-opt", "depth=3"],
}


def mask(text: str) -> str:
    """Floats become N and a bar one block, and runs of spaces on such lines shrink to two, so a
    change in a measured value (another BLAS, another engineer's better sampling) cannot flip the
    golden while every word, count, name and line break is still compared."""
    head, sep, body = text.partition("\n") if text.startswith("<?xml") else ("", "", text)
    lines = []
    for line in body.split("\n"):
        masked = BAR.sub("█", FLOAT.sub("N", line))
        masked = re.sub("█+", "█", masked)
        lines.append(re.sub(r" {2,}", "  ", masked) if masked != line else line)
    return head + sep + "\n".join(lines)


def _run(*args: str) -> str:
    """The report as rendered (masked), after checking it fits 80 columns unmasked."""
    result = CliRunner().invoke(
        app, ["analyze", *args, "--batches", "2", "--device", "cpu"], env={"COLUMNS": "80", "NO_COLOR": "1"}
    )
    assert result.exit_code in (0, 1), result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= 80 or "--format" in args
    return mask(result.stdout)


@pytest.mark.parametrize("name", list(RUNS))
def test_terminal_report_at_80_columns(name: str, golden) -> None:
    text = _run(*RUNS[name])
    golden(f"terminal_{name}.txt", text)


# The JUnit golden keeps these rules' cases: a rule added later must not rewrite it.
JUNIT_CASES = ("dead-units", "fp16-underflow", "no-gradient", "vanishing-gradients", "vanishing-through-time")


def junit_subset(xml: str) -> str:
    """The cases of JUNIT_CASES, with the suite's counts (which grow with the registry) masked."""
    cases = re.findall(r"    <testcase .*?(?:/>|</testcase>)\n", xml, flags=re.S)
    kept = [c for c in cases if re.search(r' name="([^"]+)"', c).group(1) in JUNIT_CASES]  # type: ignore[union-attr]
    head = re.sub(r'(tests|skipped)="\d+"', r'\1="N"', xml[: xml.index("    <testcase")])
    return head + "".join(kept) + xml[xml.rindex("  </testsuite>") :]


def test_markdown_of_a_real_run(golden) -> None:
    golden("real_sigmoid-mlp.md", _run(*RUNS["sigmoid-mlp"], "--format", "markdown"))


def test_junit_of_a_real_run(golden) -> None:
    golden("real_sigmoid-mlp.xml", junit_subset(_run(*RUNS["sigmoid-mlp"], "--format", "junit")))
