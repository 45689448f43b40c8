"""The option table is the one declaration: --help, the config file, the template and the docs
all come from it."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

from gradcheck_cli.config.analyze_config import AnalyzeConfig
from gradcheck_cli.config.options import CLI_OPTIONS, OPTIONS, init_template, options_markdown

ROOT = Path(__file__).resolve().parents[1]


def _script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_options", ROOT / "scripts" / "gen_options.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_analyze_help_lists_every_option(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("analyze", "--help")
    assert result.exit_code == 0
    for option in CLI_OPTIONS:
        for flag in option.flags:
            assert flag in result.stdout, f"{flag} missing from analyze --help"


def test_every_option_fills_a_config_field_or_is_command_line_only() -> None:
    names = {f.name for f in dataclasses.fields(AnalyzeConfig)}
    for option in OPTIONS:
        assert option.field in names or (option.flags and not option.keys), option.field
        assert option.help, option.field


def test_template_and_docs_are_generated_from_the_table() -> None:
    script = _script()
    assert script.TEMPLATE.read_text() == init_template(), "run python scripts/gen_options.py"
    doc = script.DOC.read_text()
    assert options_markdown() in doc, "run python scripts/gen_options.py"
    for option in OPTIONS:
        assert all(f"`{k}`" in doc for k in (*option.flags, *option.keys))


def test_init_writes_the_generated_template(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("init", str(tmp_path / "gradcheck.yaml")).exit_code == 0
    assert (tmp_path / "gradcheck.yaml").read_text() == init_template()


def test_threshold_flag_sets_one_threshold_over_the_files() -> None:
    import pytest

    from gradcheck_cli.config.analyze_config import build_config
    from gradcheck_cli.config.options import values_from_flags
    from gradcheck_cli.records.errors import ConfigError

    flags = values_from_flags({"thresholds": ["vanishing-gradients.orders=4", "dead-units.min_fraction=0.2"]})
    assert flags["thresholds"] == {
        "vanishing-gradients": {"orders": 4.0},
        "dead-units": {"min_fraction": 0.2},
    }
    file_values = {"thresholds": {"vanishing-gradients": {"orders": 2.0, "layer_orders": 1.5}}}
    config = build_config("builtin:sigmoid-mlp", flags, file_values)
    assert config.thresholds["vanishing-gradients"] == {"orders": 4.0, "layer_orders": 1.5}
    with pytest.raises(ConfigError, match="cannot read --threshold"):
        values_from_flags({"thresholds": ["vanishing-gradients=4"]})


def test_threshold_flag_changes_the_verdict(cli) -> None:  # type: ignore[no-untyped-def]
    import json

    base = (
        "analyze",
        "builtin:sigmoid-mlp",
        "-a",
        "depth=6",
        "-a",
        "width=16",
        "-b",
        "1",
        "--format",
        "json",
    )
    default = json.loads(cli(*base).stdout)
    assert [(f["id"], f["evidence"]["threshold"]) for f in default["findings"]] == [
        ("vanishing-gradients", 3.0)
    ]
    relaxed = cli(*base, "--threshold", "vanishing-gradients.orders=12")
    assert relaxed.exit_code == 0 and json.loads(relaxed.stdout)["findings"] == []


def test_every_command_declares_its_options_in_the_table(cli) -> None:  # type: ignore[no-untyped-def]
    """compare, report, zoo, explain and init take exactly the rows of COMMAND_OPTIONS: each
    --help lists every declared flag, the docs list them, and a value outside `choices` is exit 2."""
    import inspect

    from typer.main import get_command

    from gradcheck_cli.config.command_options import COMMAND_OPTIONS, commands_markdown
    from gradcheck_cli.run.cli import app

    group = get_command(app)
    assert set(COMMAND_OPTIONS) | {"analyze"} == set(group.commands)  # type: ignore[attr-defined]
    for name, options in COMMAND_OPTIONS.items():
        command = group.commands[name]  # type: ignore[attr-defined]
        assert [p.name for p in command.params] == [o.name for o in options], name
        shown = cli(name, "--help").stdout
        for option in options:
            assert all(flag in shown for flag in option.flags), (name, option.name)
            assert inspect.cleandoc(option.help).split()[0] in shown
    assert commands_markdown() in _script().DOC.read_text(), "run python scripts/gen_options.py"
    refused = cli("report", "run.jsonl", "--fail-on", "sometimes")
    assert refused.exit_code == 2 and "sometimes" in refused.stderr and "--fail-on" in refused.stderr
