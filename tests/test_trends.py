"""Trend rules inside a real training loop, and `gradcheck report` on the monitor's file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from gradcheck_cli import GradientMonitor
from tests.growing import GrowingGradNet

TRUTH = math.log10(2) * 20  # x2 every 50 steps = 6.02 orders of magnitude per 1000 steps


def train(model: GrowingGradNet, monitor: GradientMonitor, steps: int = 400) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(1)
    for step in range(steps):
        model.step = step
        x, y = torch.randn(16, 8, generator=generator), torch.randint(0, 4, (16,), generator=generator)
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        monitor.step(loss)
        optimizer.step()


@pytest.fixture(scope="module")
def growing_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[GradientMonitor, Path]:
    path = tmp_path_factory.mktemp("trend") / "run.jsonl"
    model = GrowingGradNet(doubling=50)
    with GradientMonitor(model, every=10, callback=None, jsonl=path) as monitor:
        train(model, monitor)
    return monitor, path


def test_a_gradient_doubling_every_50_steps_is_reported_within_10_percent(growing_run) -> None:  # type: ignore[no-untyped-def]
    monitor, _ = growing_run
    assert monitor.last is not None
    (trend,) = [f for f in monitor.last.report.findings if f.id == "gradient-trend"]
    assert trend.evidence["direction"] == "growth" and trend.layers == ("enc",)
    assert trend.evidence["slopes"][0] == pytest.approx(TRUTH, rel=0.10)
    assert trend.evidence["first_step"] == 0 and trend.evidence["last_step"] == 390


def test_a_stationary_noisy_run_is_not_a_trend() -> None:
    model = GrowingGradNet(doubling=None)
    with GradientMonitor(model, every=10, callback=None) as monitor:
        train(model, monitor)
    ids = {f.id for record in monitor.history for f in record.report.findings}
    assert "gradient-trend" not in ids and len(monitor.trend) == 40


def test_report_reads_the_file_and_finds_the_same_slope(growing_run) -> None:  # type: ignore[no-untyped-def]
    from gradcheck_cli.judge.run_verdict import build_run_report

    _, path = growing_run
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[5]["step"] == 50 and lines[5]["loss"] > 0 and lines[5]["activations"] == []
    report = build_run_report(path)
    (trend,) = [f for f in report.trends if f.id == "gradient-trend"]
    assert trend.evidence["slopes"][0] == pytest.approx(TRUTH, rel=0.10)
    fit = report.fits["enc"]
    assert fit is not None and fit.orders_per_1000_steps == pytest.approx(
        trend.evidence["slopes"][0], rel=1e-3
    )


def test_report_command_formats_and_exit_codes(growing_run, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    _, path = growing_run
    done = cli("report", str(path))
    assert done.exit_code == 0, done.stderr  # a warning trend does not fail at --fail-on error
    assert "gradient-trend" in done.stdout and "enc" in done.stdout and "+5.89" in done.stdout  # truth +6.02
    assert cli("report", str(path), "--fail-on", "warning").exit_code == 1
    html = tmp_path / "run.html"
    done = cli("report", str(path), "--format", "html", "--output", str(html))
    assert done.exit_code == 0 and "<svg" in html.read_text() and "wrote" in done.stderr
    markdown = cli("report", str(path), "--format", "markdown").stdout
    assert "| `enc` |" in markdown and "### Trend findings" in markdown


def test_report_on_a_bad_file_exits_2_naming_the_line(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 0, "layers": []}\nnot json\n')
    done = cli("report", str(bad))
    assert done.exit_code == 2 and done.exception is None
    assert f"{bad}:2:" in done.stderr and "hint:" in done.stderr
    assert cli("report", str(tmp_path / "missing.jsonl")).exit_code == 2
    assert cli("report", str(bad), "--format", "pdf").exit_code == 2
