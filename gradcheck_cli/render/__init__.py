"""Output formats: one small renderer class per format."""

from __future__ import annotations

from enum import Enum

from gradcheck_cli.errors import ConfigError
from gradcheck_cli.render.base import Renderer


class Format(str, Enum):
    RICH = "rich"
    JSON = "json"
    MARKDOWN = "markdown"
    JUNIT = "junit"
    HTML = "html"


def get_renderer(fmt: Format | str, *, width: int = 100, color: bool = False) -> Renderer:
    fmt = Format(fmt)
    if fmt is Format.RICH:
        from gradcheck_cli.render.terminal import TerminalRenderer

        return TerminalRenderer(width=width, color=color)
    if fmt is Format.JSON:
        from gradcheck_cli.render.json import JsonRenderer

        return JsonRenderer()
    raise ConfigError(f"--format {fmt.value} is not available yet")
