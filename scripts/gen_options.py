"""Regenerate what the option table (gradcheck_cli/config/options.py) generates into files:

    python scripts/gen_options.py     # templates/gradcheck.yaml and the option lists in docs/options.md

tests/test_options.py fails when either is stale.
"""

from __future__ import annotations

from pathlib import Path

from gradcheck_cli.config.command_options import commands_markdown
from gradcheck_cli.config.options import init_template, options_markdown

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "gradcheck_cli" / "templates" / "gradcheck.yaml"
DOC = ROOT / "docs" / "options.md"
MARKERS = ("<!-- options:start -->", "<!-- options:end -->")
COMMAND_MARKERS = ("<!-- commands:start -->", "<!-- commands:end -->")


def replace_between(text: str, markers: tuple[str, str], body: str) -> str:
    start, end = markers
    head, rest = text.split(start, 1)
    return f"{head}{start}\n{body}{end}{rest.split(end, 1)[1]}"


def main() -> None:
    TEMPLATE.write_text(init_template())
    text = replace_between(DOC.read_text(), MARKERS, options_markdown())
    DOC.write_text(replace_between(text, COMMAND_MARKERS, commands_markdown()))


if __name__ == "__main__":
    main()
