"""The command line's start-up shortcuts give what the long way gives: option values converted
without pydantic equal typer's own conversion, and the deferred rich classes are the real ones."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer import _adapters
from typer.models import OptionInfo

from gradcheck_cli.run import coercion, entry
from gradcheck_cli.run.cli import app

VALUES = ["12", "-3", "+4", "007", "1e-3", "2.5E+2", ".5", "5.", "abc", "1_000", " 7", "inf", "nan",
          "0x10", "", "1.0", "١٢"]  # fmt: skip


@pytest.mark.parametrize("annotation", [int, float, str])
@pytest.mark.parametrize("value", VALUES)
def test_a_plain_value_converts_as_typer_converts_it(annotation: type, value: str) -> None:
    converted = coercion.plain(annotation, value)
    if converted is coercion.UNSET:
        return  # typer's own converter decides (PlainParam hands it over)
    typer_own = _adapters.build_adapter(annotation, OptionInfo()).validate_python(value)
    assert type(converted) is type(typer_own) and converted == typer_own


def test_lists_and_paths_and_flags() -> None:
    assert coercion.plain(list[str], ("a", "b,c")) == ["a", "b,c"]
    assert coercion.plain(Path, "out/report.json") == Path("out/report.json")
    assert coercion.plain(bool, True) is True
    assert coercion.plain(int, 3) is coercion.UNSET  # not from the command line: typer decides


def test_a_value_typer_refuses_is_still_refused_with_its_message(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("analyze", "builtin:tanh-mlp", "--batches", "many")
    assert result.exit_code == 2
    assert "Input should be a valid integer" in result.stderr


def test_every_command_converts_its_own_options() -> None:
    import typer.main

    group = typer.main.get_command(app)
    assert isinstance(group, coercion.PlainGroup)
    assert all(isinstance(command, coercion.PlainCommand) for command in group.commands.values())  # type: ignore[attr-defined]


def test_deferred_classes_are_the_real_ones_on_use() -> None:
    from rich.markdown import Markdown
    from rich.traceback import Traceback

    stand_in = entry.deferred("rich.markdown", "Markdown")
    assert isinstance(stand_in("# title"), Markdown)
    traceback_class = entry.deferred("rich.traceback", "Traceback")
    try:
        raise ValueError("x")
    except ValueError as exc:
        assert isinstance(traceback_class.from_exception(type(exc), exc, exc.__traceback__), Traceback)


@pytest.mark.parametrize(
    ("argv", "help_"),
    [([], True), (["--help"], True), (["analyze", "-h"], True), (["analyze", "x.py"], False),
     (["analyze", "--", "-h"], False), (["--version"], False)],
)  # fmt: skip
def test_help_is_recognised(argv: list[str], help_: bool) -> None:
    assert entry.wants_help(argv) is help_
