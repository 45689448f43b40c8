"""Output formats: one small renderer class per format."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from gradcheck_cli.records.outcome import TargetFailure
from gradcheck_cli.records.report import Report
from gradcheck_cli.render.base import Renderer


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
    failures: Sequence[TargetFailure] = (),
    columns: tuple[str, ...] = (),
) -> str:
    """One document for one or several targets (a config file's `targets:`); targets that could
    not be analysed are listed in it (JSON `errors`, a JUnit <error>, a Markdown row)."""
    renderer = get_renderer(fmt, width=width, color=color, fail_on=fail_on, columns=columns)
    if len(reports) == 1 and not failures:
        return renderer.render(reports[0])
    if Format(fmt) is Format.JSON:
        # Imported here: the submodule render.json shadows a module-level `import json` in this package.
        from json import dumps

        from gradcheck_cli.render.json import to_document

        document: dict[str, object] = {"schema": MULTI_SCHEMA, "reports": [to_document(r) for r in reports]}
        if failures:
            document["errors"] = [_failure_json(f) for f in failures]
        return dumps(document, indent=2, allow_nan=False) + "\n"
    render_many = getattr(renderer, "render_many", None)
    if render_many is not None:
        return str(render_many(reports, failures) if failures else render_many(reports))
    text = "\n".join(renderer.render(r) for r in reports)
    from gradcheck_cli.render.escape import visible

    return text + "".join(visible(f"\ngradcheck {f.target}: could not run: {f.message}\n") for f in failures)


def _failure_json(failure: TargetFailure) -> dict[str, object]:
    return {
        "target": failure.target,
        "stage": failure.stage,
        "message": failure.message,
        "hint": failure.hint,
    }
