"""Loader gaps on real constructors: derived config fields, lazy names, routed --init, raising builds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

LOADERS = Path(__file__).parent / "fixtures" / "loaders"
JSON = ("--format", "json", "--device", "cpu", "--batches", "1", "--batch-size", "4")


@pytest.fixture(autouse=True)
def _in_loaders(monkeypatch) -> None:
    monkeypatch.chdir(LOADERS)


def ran(result) -> dict:
    assert result.exit_code in (0, 1), result
    return json.loads(result.stdout)


def fails_cleanly(result, *words: str) -> str:
    assert result.exit_code == 2, result
    assert result.stdout == "" and "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr, result.stderr
    return result.stderr


def test_init_changing_the_count_rebuilds_the_derived_list(cli) -> None:
    report = ran(cli("analyze", "derived_config.py:Stack", "--init", "n_layers=6", *JSON))
    config = report["model"]["init_args"]["config"]
    assert config["n_layers"] == 6 and config["layer_widths"] == [16] * 6
    assert sum(1 for layer in report["layers"] if layer["type"] == "Linear") == 7


def test_init_keyword_of_the_constructor_not_the_config_goes_to_the_constructor(cli) -> None:
    report = ran(
        cli("analyze", "derived_config.py:Stack", "--init", "dropout=0.25", "--init", "width=8", *JSON)
    )
    init_args = report["model"]["init_args"]
    assert init_args["dropout"] == 0.25 and init_args["config"]["width"] == 8


def test_init_unknown_to_both_names_both(cli) -> None:
    stderr = fails_cleanly(
        cli("analyze", "derived_config.py:Stack", "--init", "dropuot=0.1", *JSON), "dropuot"
    )
    assert "did you mean 'dropout'" in stderr


def test_config_validator_that_raises_is_exit_2_naming_it_and_its_line(cli) -> None:
    stderr = fails_cleanly(
        cli("analyze", "strict_config.py:Attention", "--init", "heads=3", *JSON),
        "HeadsConfig(heads=3)",
        "AssertionError: width must be divisible by heads",
        "strict_config.py:14",
    )
    assert stderr.count("error:") == 1


def test_derived_list_that_contradicts_the_count_is_exit_2_with_the_validator_line(cli) -> None:
    fails_cleanly(
        cli("analyze", "derived_config.py:Stack", "--init", "layer_widths=[8, 8]", *JSON),
        "ValueError: layer_widths has 2 entries for 4 layers",
        "derived_config.py:18",
    )


def test_lazy_module_getattr_names_work_in_the_call_form(cli) -> None:
    report = ran(cli("analyze", "lazy_pkg:TinyNet(width=5)", *JSON))
    assert report["model"]["class"] == "TinyNet"
    assert next(layer for layer in report["layers"] if layer["name"] == "body.0")["parameters"] == 6 * 5 + 5
    assert ran(cli("analyze", "lazy_pkg:tiny_net(4)", *JSON))["model"]["class"] == "TinyNet"


def test_constructor_that_downloads_gets_an_offline_hint(cli) -> None:
    stderr = fails_cleanly(
        cli("analyze", "downloads.py:Classifier", *JSON),
        "URLError",
        "downloads.py:9",
        "--init pretrained=false",
    )
    assert "network" in stderr
    assert ran(cli("analyze", "downloads.py:Classifier", "--init", "pretrained=false", *JSON))


def test_constructor_that_exits_is_exit_2_not_a_crash(cli, tmp_path) -> None:
    model = tmp_path / "exits.py"
    model.write_text(
        "import sys\nfrom torch import nn\n\n\nclass Net(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        sys.exit('no GPU found')\n"
    )
    fails_cleanly(cli("analyze", f"{model}:Net", *JSON), "SystemExit: no GPU found", "exits.py:8")
