from __future__ import annotations

from gradcheck_cli.render import render_reports
from gradcheck_cli.render.markdown import MarkdownRenderer


def test_markdown_golden(vanishing_report, golden) -> None:
    golden("report.md", MarkdownRenderer().render(vanishing_report))


def test_markdown_two_targets_golden(vanishing_report, healthy_report, golden) -> None:
    golden("report_two_targets.md", render_reports("markdown", [vanishing_report, healthy_report]))


def test_pipe_in_message_does_not_break_the_table(vanishing_report) -> None:
    text = MarkdownRenderer().render(vanishing_report)
    row = next(line for line in text.splitlines() if "`vanishing-gradients` |" in line)
    assert "layers.6 \\| deep" in row
    assert row.count(" | ") == 3  # four cells, the message's pipe escaped
