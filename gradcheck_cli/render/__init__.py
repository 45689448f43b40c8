"""Output formats: one small renderer class per format."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from gradcheck_cli.render.base import Renderer
from gradcheck_cli.report import Report


class Format(str, Enum):
    RICH = "rich"
    JSON = "json"
    MARKDOWN = "markdown"
    JUNIT = "junit"
    HTML = "html"


def get_renderer(
    fmt: Format | str,
    *,
    width: int = 100,
    color: bool = False,
    fail_on: str = "error",
    columns: tuple[str, ...] = (),
) -> Renderer:
    fmt = Format(fmt)
    if fmt is Format.RICH:
        from gradcheck_cli.render.terminal import TerminalRenderer

        return TerminalRenderer(width=width, color=color, columns=columns)
    if fmt is Format.JSON:
        from gradcheck_cli.render.json import JsonRenderer

        return JsonRenderer()
    if fmt is Format.MARKDOWN:
        from gradcheck_cli.render.markdown import MarkdownRenderer

        return MarkdownRenderer()
    if fmt is Format.JUNIT:
        from gradcheck_cli.render.junit import JunitRenderer

        return JunitRenderer(fail_on=fail_on)
    from gradcheck_cli.render.html import HtmlRenderer

    return HtmlRenderer()


MULTI_SCHEMA = "gradcheck.reports/1"


def render_reports(
    fmt: Format | str,
    reports: Sequence[Report],
    *,
    width: int = 100,
    color: bool = False,
    fail_on: str = "error",
    columns: tuple[str, ...] = (),
) -> str:
    """One document for one or several targets (a config file's `targets:`)."""
    renderer = get_renderer(fmt, width=width, color=color, fail_on=fail_on, columns=columns)
    if len(reports) == 1:
        return renderer.render(reports[0])
    if Format(fmt) is Format.JSON:
        # Imported here: the submodule render.json shadows a module-level `import json` in this package.
        from json import dumps

        from gradcheck_cli.render.json import to_document

        docs = [to_document(r) for r in reports]
        return dumps({"schema": MULTI_SCHEMA, "reports": docs}, indent=2, allow_nan=False) + "\n"
    render_many = getattr(renderer, "render_many", None)
    if render_many is not None:
        return str(render_many(reports))
    return "\n".join(renderer.render(r) for r in reports)
