"""docs/diagnostics.md documents every finding id from the same text `gradcheck explain` prints."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from gradcheck_cli.judge.rules import every_rule

ROOT = Path(__file__).resolve().parents[2]


def load_script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("zoo_table", ROOT / "scripts" / "zoo_table.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_sections_are_generated_from_the_docstrings() -> None:
    script = load_script()
    text = (ROOT / "docs" / "diagnostics.md").read_text()
    expected = script.replace_between(text, script.RULES, script.rule_sections())
    for spec in every_rule():  # every registered rule is documented, from its current docstring
        assert f"### `{spec.id}`" in text, f"{spec.id} is undocumented: run scripts/zoo_table.py --rules"
        block = expected.split(f"### `{spec.id}`", 1)[1].split("\n### ", 1)[0]
        assert block in text, f"docs section of {spec.id} is stale: run scripts/zoo_table.py --rules"


def test_zoo_table_is_present_and_measured() -> None:
    text = (ROOT / "docs" / "diagnostics.md").read_text()
    table = text.split("<!-- zoo-table:start -->", 1)[1].split("<!-- zoo-table:end -->", 1)[0]
    assert "`builtin:vanilla-rnn` | vanishing-through-time | error" in table
    assert "by `python scripts/zoo_table.py`" in table


def test_explain_prints_the_docstring(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("explain", "dead-units")
    assert result.exit_code == 0
    assert "What it detects" in result.stdout
    assert "F.relu" in result.stdout


def test_rules_and_diagnose_stay_torch_free() -> None:
    import subprocess
    import sys

    code = (
        "import sys, gradcheck_cli.judge.diagnose, gradcheck_cli.judge.rules, gradcheck_cli.judge.rules.profile;"
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_explain_serves_baseline_regression(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("explain", "baseline-regression")
    assert result.exit_code == 0
    assert "What it detects" in result.stdout and "--baseline-orders" in result.stdout
