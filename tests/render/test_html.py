"""The HTML report: one self-contained file, its chart drawn by a real browser."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gradcheck_cli.render import render_reports
from gradcheck_cli.render.html import HtmlRenderer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
]


def test_html_golden(vanishing_report, golden) -> None:
    golden("report.html", HtmlRenderer().render(vanishing_report))


def test_html_is_self_contained(vanishing_report, recurrent_report) -> None:
    page = render_reports("html", [vanishing_report, recurrent_report])
    assert not re.search(r"https?:|//|<script|<link|@import|url\(", page, flags=re.I)
    assert page.count("<svg") == 3  # a flow chart per report, a through-time curve for the RNN


def test_chart_has_a_bar_per_layer_on_a_log_axis(vanishing_report) -> None:
    page = HtmlRenderer().render(vanishing_report)
    heights = [float(h) for h in re.findall(r'<rect class="bar"[^>]*height="([0-9.]+)"', page)]
    assert len(heights) == 4
    # ∇output 1e-6, 1e-4, 1e-2, 0.5: equal decades give equal steps in bar height.
    assert heights == sorted(heights)
    assert heights[1] - heights[0] == pytest.approx(heights[2] - heights[1], rel=0.02)
    assert ">1e-6<" in page and ">1e0<" in page


# The probe script runs only in the test's copy: the report itself has no script.
PROBE = """<script>
const bars = [...document.querySelectorAll('svg.grad-flow rect.bar')].map(b => b.getBoundingClientRect());
const line = document.querySelector('svg.grad-flow polyline.ratio').getBoundingClientRect();
document.title = 'drawn:' + bars.filter(r => r.width > 1 && r.height > 1).length + ':' + (line.width > 100);
</script></body>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_chromium_draws_the_chart(vanishing_report, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(HtmlRenderer().render(vanishing_report).replace("</body>", PROBE))
    assert CHROMIUM is not None
    dom = subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=60
    ).stdout
    assert "<title>drawn:4:true</title>" in dom


def test_colours_follow_severity_and_missing_values_are_not_drawn(vanishing_report) -> None:
    from dataclasses import replace

    rows = list(vanishing_report.layers)
    rows[3] = replace(
        rows[3], stats=replace(rows[3].stats, act_grad_norm=float("nan"), grad_weight_ratio=float("nan"))
    )
    page = HtmlRenderer().render(replace(vanishing_report, layers=tuple(rows)))
    fills = re.findall(r'<rect class="bar"[^>]*fill="(#[0-9a-f]+)"', page)
    assert fills == [
        "#dc2626",
        "#dc2626",
        "#94a3b8",
    ]  # error red, error red, neutral; the NaN layer has no bar
    assert page.count('<polyline class="ratio"') == 1  # the line stops at the missing value


def test_multi_target_page_starts_with_a_summary_table(vanishing_report, healthy_report) -> None:
    page = render_reports("html", [vanishing_report, healthy_report])
    head = page[: page.index("<section")]
    assert 'class="summary"' in head and 'href="#target-model-py"' in head and "(2 targets)" in head


def test_through_time_has_steps_horizon_and_underflow(recurrent_report) -> None:
    page = HtmlRenderer().render(recurrent_report)
    svg = page[page.index('<svg class="through-time"') :]
    assert 'class="horizon"' in svg and "time step (the loss is on the last)" in svg
