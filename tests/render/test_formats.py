"""Every Format has a renderer that turns a Report into text (the exhaustiveness test), and every
format can combine several targets into one document."""

from __future__ import annotations

import pytest

from gradcheck_cli.render import Format, get_renderer, render_reports


@pytest.mark.parametrize("fmt", list(Format))
def test_every_format_renders(fmt: Format, vanishing_report, healthy_report) -> None:
    renderer = get_renderer(fmt, width=80)
    assert renderer.format == fmt.value
    single = renderer.render(vanishing_report)
    both = render_reports(fmt, [vanishing_report, healthy_report], width=80)
    assert "vanishing-gradients" in single
    assert "vanishing-gradients" in both and "builtin:residual-mlp" in both
