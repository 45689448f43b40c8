"""The CI gate as a user's repository meets it: a gradcheck.yaml naming two models, run with no
flags, gives exit 1, one Markdown report with both, and a JUnit file with exactly one failure."""

from __future__ import annotations

import textwrap
from pathlib import Path

import junitparser
import pytest

REPO_CONFIG = """
# Two models in one repository: the healthy one and the one a pull request broke.
device: cpu
batches: 2
reports:
  - {format: markdown, output: reports/gradcheck.md}
  - {format: junit, output: reports/gradcheck.xml}
targets:
  - target: builtin:residual-mlp
    arch-opt: {depth: 3, width: 32}
  - target: builtin:sigmoid-mlp
    arch-opt: {depth: 8, width: 32}
"""


@pytest.fixture(scope="module")
def repo_run(tmp_path_factory: pytest.TempPathFactory):
    """Run `gradcheck analyze` with no flags once in a fake repository, as CI would."""
    from conftest import run_cli

    repo = tmp_path_factory.mktemp("repo")
    (repo / "gradcheck.yaml").write_text(textwrap.dedent(REPO_CONFIG))
    mp = pytest.MonkeyPatch()
    mp.chdir(repo)
    mp.setenv("GITHUB_ACTIONS", "true")
    mp.setenv("GITHUB_STEP_SUMMARY", str(repo / "summary.md"))
    try:
        yield repo, run_cli("analyze")
    finally:
        mp.undo()


def test_exit_1_because_one_model_vanishes(repo_run) -> None:
    _, result = repo_run
    assert result.exit_code == 1, result
    assert "builtin:residual-mlp: healthy" in result.stderr
    assert "builtin:sigmoid-mlp: error" in result.stderr


def test_markdown_report_has_both_models(repo_run) -> None:
    repo, _ = repo_run
    text = (repo / "reports" / "gradcheck.md").read_text()
    assert "(2 targets)" in text
    assert "### gradcheck `builtin:residual-mlp`: ✅ healthy" in text
    assert "### gradcheck `builtin:sigmoid-mlp`: ❌ error" in text
    assert "| error | `vanishing-gradients` |" in text


def test_junit_file_holds_exactly_one_failure(repo_run) -> None:
    repo, _ = repo_run
    suites = list(junitparser.JUnitXml.fromfile(str(repo / "reports" / "gradcheck.xml")))
    assert [s.name for s in suites] == ["builtin:residual-mlp", "builtin:sigmoid-mlp"]
    failures = [(s.name, case.name) for s in suites for case in s if case.is_failure]
    assert failures == [("builtin:sigmoid-mlp", "vanishing-gradients")]


def test_terminal_still_gets_both_reports(repo_run) -> None:
    _, result = repo_run
    assert (
        "gradcheck builtin:residual-mlp" in result.stdout and "gradcheck builtin:sigmoid-mlp" in result.stdout
    )


def test_github_annotations_point_at_the_model_line(repo_run) -> None:
    _, result = repo_run
    lines = [line for line in result.stderr.splitlines() if line.startswith("::")]
    assert lines and all(line.startswith("::error ") for line in lines)
    # A builtin's source is gradcheck's own file, outside the repository: no file= to point at.
    assert "file=" not in lines[0] and "vanishing-gradients" in lines[0]


def test_step_summary_gets_the_markdown(repo_run) -> None:
    repo, _ = repo_run
    summary = (repo / "summary.md").read_text()
    assert "builtin:sigmoid-mlp" in summary and "vanishing-gradients" in summary


def test_annotation_escapes_and_relative_path(tmp_path: Path) -> None:
    from render.reports import vanishing

    from gradcheck_cli.render.annotations import annotation

    report = vanishing()
    (tmp_path / "model.py").write_text("# the model\n")
    line = annotation(report, report.findings[0], tmp_path)
    assert line.startswith("::error title=gradcheck vanishing-gradients (model.py),file=model.py,line=12::")
    assert "%0A" not in line and "\n" not in line


def test_severity_override_and_ignore_from_the_file_change_the_exit_code(
    tmp_path: Path, cli, monkeypatch
) -> None:
    (tmp_path / "gradcheck.yaml").write_text(
        "target: builtin:sigmoid-mlp\ndevice: cpu\nbatches: 1\narch-opt: {depth: 8, width: 16}\n"
        "rules: {vanishing-gradients: warning}\n"
    )
    monkeypatch.chdir(tmp_path)
    assert cli("analyze", "--format", "json").exit_code == 0
    assert cli("analyze", "--format", "json", "--fail-on", "warning").exit_code == 1
