"""The output formats, named once. The renderer registries (render/__init__.py `RENDERERS` for an
analysis, render/history.py `RUN_RENDERERS` for `gradcheck report`) are keyed by these names, the
option table reads its choices from here, and tests/render/test_formats.py ties the two together:
a format without a renderer, or a renderer without a name here, fails that test."""

from __future__ import annotations

from enum import Enum


class Format(str, Enum):
    RICH = "rich"
    JSON = "json"
    MARKDOWN = "markdown"
    JUNIT = "junit"
    HTML = "html"


RUN_FORMATS: tuple[Format, ...] = (Format.RICH, Format.MARKDOWN, Format.HTML, Format.JSON)
"""The formats `gradcheck report RUN.jsonl` renders a training run's history in (no JUnit: a run
history has no test cases)."""

SCALE_FORMATS: tuple[Format, ...] = (Format.RICH, Format.MARKDOWN, Format.HTML, Format.JSON)
"""The formats `gradcheck scale` renders its width sweep in (no JUnit: one verdict, no layers)."""


def choices(formats: tuple[Format, ...] | type[Format] = Format) -> tuple[str, ...]:
    return tuple(f.value for f in formats)
