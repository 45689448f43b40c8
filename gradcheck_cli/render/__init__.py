"""Render: a Report (or several, or a run's history) in, text out; one small renderer class per
format, registered in `RENDERERS` under its records.formats.Format name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gradcheck_cli.records.formats import Format
from gradcheck_cli.records.outcome import TargetFailure
from gradcheck_cli.records.report import Report
from gradcheck_cli.render.base import Renderer

__all__ = ["RENDERERS", "Format", "RenderSettings", "get_renderer", "render_reports"]


@dataclass(frozen=True, slots=True)
class RenderSettings:
    width: int = 100
    color: bool = False
    fail_on: str = "error"
    columns: tuple[str, ...] = ()


def _rich(s: RenderSettings) -> Renderer:
    from gradcheck_cli.render.terminal import TerminalRenderer

    return TerminalRenderer(width=s.width, color=s.color, columns=s.columns)


def _json(s: RenderSettings) -> Renderer:
    from gradcheck_cli.render.json import JsonRenderer

    return JsonRenderer()


def _markdown(s: RenderSettings) -> Renderer:
    from gradcheck_cli.render.markdown import MarkdownRenderer

    return MarkdownRenderer()


def _junit(s: RenderSettings) -> Renderer:
    from gradcheck_cli.render.junit import JunitRenderer

    return JunitRenderer(fail_on=s.fail_on)


def _html(s: RenderSettings) -> Renderer:
    from gradcheck_cli.render.html import HtmlRenderer

    return HtmlRenderer()


RENDERERS: dict[Format, Callable[[RenderSettings], Renderer]] = {
    Format.RICH: _rich,
    Format.JSON: _json,
    Format.MARKDOWN: _markdown,
    Format.JUNIT: _junit,
    Format.HTML: _html,
}
"""The renderer of each format (imported on first use). A new format: a name in records/formats.py,
a module here with a class whose `format` is that name, and its entry in this table."""


def get_renderer(
    fmt: Format | str,
    *,
    width: int = 100,
    color: bool = False,
    fail_on: str = "error",
    columns: tuple[str, ...] = (),
) -> Renderer:
    return RENDERERS[Format(fmt)](RenderSettings(width, color, fail_on, columns))


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
