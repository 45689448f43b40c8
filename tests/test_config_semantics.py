"""Config and CLI semantics as ruff users expect: --select/--ignore, --show-config with origins,
--target NAME, ad-hoc targets never overwrite configured reports, paths relative to the file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

SMALL = ("--arch-opt", "depth=6", "--batches", "1")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repo whose config lives in ci/ and names paths relative to that folder."""
    (tmp_path / "ci").mkdir()
    (tmp_path / "ci" / "gradcheck.yaml").write_text(
        "batches: 1\n"
        "arch-opt: {depth: 6}\n"
        "reports:\n"
        "  - {format: json, output: ../reports/all.json}\n"
        "rules:\n"
        "  saturated-activations: off\n"
        "targets:\n"
        "  - target: builtin:sigmoid-mlp\n"
        "    name: deep\n"
        "    ignore: [vanishing-gradients]\n"
        "  - target: builtin:residual-mlp\n"
    )
    os.chdir(tmp_path)
    return tmp_path


def test_select_and_ignore_on_the_command_line(cli) -> None:
    ignored = cli("analyze", "builtin:sigmoid-mlp", *SMALL, "--ignore", "vanishing-gradients", "-f", "json")
    assert ignored.exit_code == 0, ignored
    doc = json.loads(ignored.stdout)
    assert doc["summary"]["ignored"] >= 1 and doc["ignored"][0]["reason"] == "ignore: vanishing-gradients"
    selected = cli(
        "analyze", "builtin:sigmoid-mlp", *SMALL, "--select", "dead-units,no-gradient", "-f", "json"
    )
    assert selected.exit_code == 0 and "not in select" in selected.stdout
    typo = cli("analyze", "builtin:sigmoid-mlp", "--ignore", "vanishing-gradient")
    assert typo.exit_code == 2 and "did you mean 'vanishing-gradients'" in typo.stderr


def test_show_config_gives_each_value_its_origin(cli, repo: Path) -> None:
    result = cli("analyze", "--config", "ci/gradcheck.yaml", "--show-config", "--seed", "7")
    assert result.exit_code == 0, result
    out = result.stdout
    assert "- target: builtin:sigmoid-mlp" in out.replace("'", "")
    assert any(
        line.startswith("  batches: 1") and line.endswith("# ci/gradcheck.yaml:1")
        for line in out.splitlines()
    )
    assert any(line.startswith("  seed: 7") and line.endswith("# --seed") for line in out.splitlines())
    assert any(
        "rules: {saturated-activations: 'off'}" in line and "ci/gradcheck.yaml:5" in line
        for line in out.splitlines()
    )
    assert (
        "output: ../reports/all.json" not in out and "output: reports/all.json" in out
    )  # from the file's folder


def test_target_name_runs_one_configured_target_with_its_settings(cli, repo: Path) -> None:
    result = cli("analyze", "-c", "ci/gradcheck.yaml", "--target", "deep")
    assert result.exit_code == 0, result  # its own ignore: applies
    doc = json.loads((repo / "reports" / "all.json").read_text())
    assert doc["target"] == "builtin:sigmoid-mlp" and doc["summary"]["ignored"] >= 1
    unknown = cli("analyze", "-c", "ci/gradcheck.yaml", "--target", "dep")
    assert unknown.exit_code == 2 and "did you mean 'deep'" in unknown.stderr


def test_ad_hoc_target_never_overwrites_configured_reports(cli, repo: Path) -> None:
    result = cli("analyze", "-c", "ci/gradcheck.yaml", "builtin:sigmoid-mlp", "-f", "json")
    assert result.exit_code == 0, result  # the configured target's ignore: still applies
    assert not (repo / "reports").exists()
    assert json.loads(result.stdout)["summary"]["ignored"] >= 1


def test_rules_off_and_false_are_the_same(cli, tmp_path: Path) -> None:
    os.chdir(tmp_path)
    for spelling in ("off", "false", "'off'"):
        Path("gradcheck.yaml").write_text(
            f"target: builtin:sigmoid-mlp\nbatches: 1\nrules: {{vanishing-gradients: {spelling}}}\n"
        )
        result = cli("analyze", "--arch-opt", "depth=6", "-f", "json")
        assert result.exit_code == 0, (spelling, result)


def test_compare_on_multi_target_reports_compares_every_target_or_the_named_one(cli, repo: Path) -> None:
    assert cli("analyze", "-c", "ci/gradcheck.yaml").exit_code == 0
    both = repo / "reports" / "all.json"
    result = cli("compare", str(both), str(both))
    assert result.exit_code == 0, result
    assert "target builtin:sigmoid-mlp" in result.stdout and "target builtin:residual-mlp" in result.stdout
    one = cli("compare", str(both), str(both), "--target", "builtin:residual-mlp")
    assert one.exit_code == 0 and "target builtin:sigmoid-mlp" not in one.stdout
    missing = cli("compare", str(both), str(both), "--target", "builtin:gru")
    assert missing.exit_code == 2 and "builtin:sigmoid-mlp, builtin:residual-mlp" in missing.stderr
