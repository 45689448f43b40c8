"""Tables that fit: at 80 and 120 columns every number is printed whole and long qualified names
are shortened in the middle, keeping the end that tells query, key and value apart (goldens)."""

from __future__ import annotations

import re

import pytest

from gradcheck_cli.records.findings import LayerStatus
from gradcheck_cli.render.base import fmt_num
from gradcheck_cli.render.fit import fitted_table, middle
from gradcheck_cli.render.terminal import TerminalRenderer
from tests.render.reports import layer, make_report

PREFIX = "bert.encoder.layer"
NAMES = [
    f"{PREFIX}.{i}.attention.{part}"
    for i in range(2)
    for part in ("self.query", "self.key", "self.value", "output.dense")
] + [f"{PREFIX}.1.intermediate.dense", "classifier"]
VALUES = [8.6e-05, 1.23e-07, 4.56e04, 0.5, 12.3, 7.77e-3, 1.0e10, 3.3e-12, 0.0123, 999.0]


def long_names():
    rows = [
        (layer(i, name, VALUES[i], VALUES[-1 - i]), LayerStatus.OK if i % 3 else LayerStatus.VANISHING)
        for i, name in enumerate(NAMES)
    ]
    return make_report("model.py", rows, ())


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("columns", [(), ("order", "output", "params")])
def test_layer_table_fits_with_every_number_whole(width: int, columns: tuple[str, ...], golden) -> None:
    text = TerminalRenderer(width=width, columns=columns).render(long_names())
    assert max(len(line) for line in text.splitlines()) <= width
    table = text[text.index("layer") :]
    for value in VALUES:
        assert fmt_num(value) in table, (fmt_num(value), table)
    assert not re.search(r"\d…|e[-+]?…", table)  # no number cut (a name may start "…0.")
    assert all(cut.startswith("bert.…") for cut in re.findall(r"\S*…\S*", table))  # only names
    for name in NAMES:  # each row keeps its distinguishing end
        assert name.rsplit(".", 2)[-1] in table
    if width == 120:
        assert all(name in table for name in NAMES)  # room enough: names whole
    else:  # shortened in the middle, the layer index and the leaf kept where room allows
        assert "bert.…layer.0.attention.self.query" in table or "bert.…" in table
    suffix = "_".join(columns) or "default"
    golden(f"terminal_long_names_{width}_{suffix}.txt", text)


def test_names_shortened_in_the_middle_keep_whole_trailing_segments() -> None:
    name = "bert.encoder.layer.0.attention.self.query"
    assert middle(name, 80) == name
    assert middle(name, 34) == "bert.…layer.0.attention.self.query"
    assert middle(name, 20) == "bert.…self.query"
    assert middle("a" * 30, 10) == "…" + "a" * 9
    assert all(len(middle(name, w)) <= w for w in range(1, 45))


def test_fitted_table_keeps_numbers_whole_and_wraps_headers() -> None:
    from io import StringIO

    from rich.console import Console

    headers = ["layer", "grad norm", "at step 1000", "grad/weight", "at step 1000", "weight norm", "change"]
    rows = [[name, "8.6e-05", "1.2e-07", "4.6e+04", "3.3e-12", "1.0e+10", "0.91x"] for name in NAMES]
    console = Console(file=StringIO(), width=80, no_color=True)
    console.print(fitted_table(headers, rows, 80))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text.split("\n", 3)[-1].replace("bert.…", "")  # only names shortened
    for number in ("8.6e-05", "1.2e-07", "4.6e+04", "3.3e-12", "1.0e+10", "0.91x"):
        assert text.count(number) == len(NAMES)
    assert "step" in text and "1000" in text  # the header wrapped, not cut


@pytest.mark.parametrize("command", ["", "analyze", "compare", "report", "zoo", "explain", "init"])
def test_help_wraps_at_80_columns_instead_of_cutting(command: str) -> None:
    from typer.testing import CliRunner

    from gradcheck_cli.run.cli import app

    result = CliRunner().invoke(app, [*command.split(), "--help"], env={"COLUMNS": "80", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout, [line for line in result.stdout.splitlines() if "…" in line]
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
