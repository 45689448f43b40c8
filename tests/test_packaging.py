"""What users install and copy: version metadata, the CI examples, the pre-commit hook, the template.
(The wheel itself is built and installed into a fresh venv by .ci/run.)"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import yaml

from gradcheck_cli import __version__
from gradcheck_cli.config.configfile import load_configs

ROOT = Path(__file__).resolve().parent.parent


def test_version_matches_package_metadata(cli) -> None:
    assert importlib.metadata.version("gradcheck-cli") == __version__
    assert cli("--version").stdout.strip() == f"gradcheck {__version__}"


def test_license_and_changelog_ship() -> None:
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert "## [Unreleased]" in (ROOT / "CHANGELOG.md").read_text()


def test_pre_commit_hook_runs_gradcheck_analyze() -> None:
    hook, isolated = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "gradcheck" and hook["language"] == "system"  # the repo's own environment
    assert isolated["id"] == "gradcheck-isolated" and isolated["language"] == "python"
    assert hook["entry"] == "gradcheck analyze" and hook["pass_filenames"] is False


def test_ci_examples_are_valid_and_run_gradcheck() -> None:
    for name in ("github-actions.yml", "gitlab-ci.yml", "pre-commit-config.yaml"):
        text = (ROOT / "examples" / "ci" / name).read_text()
        assert yaml.safe_load(text)
    assert "gradcheck analyze" in (ROOT / "examples/ci/github-actions.yml").read_text()
    assert "junit: gradcheck.xml" in (ROOT / "examples/ci/gitlab-ci.yml").read_text()


def test_example_config_loads(tmp_path: Path) -> None:
    configs = load_configs(None, {}, ROOT / "examples" / "ci" / "gradcheck.yaml", tmp_path)
    assert [c.target.raw for c in configs] == ["builtin:residual-mlp", "builtin:gru"]
    assert configs[1].ignore == (("no-gradient", ("teacher.*",)),)
    failing = load_configs(None, {}, ROOT / "examples" / "ci" / "failing" / "gradcheck.yaml", tmp_path)
    assert [c.target.raw for c in failing] == ["builtin:residual-mlp", "builtin:sigmoid-mlp"]


def test_template_with_every_block_uncommented_loads(tmp_path: Path) -> None:
    """The template's commented examples are valid config once uncommented (a '# key:' line and
    the indented lines under it)."""
    template = (ROOT / "gradcheck_cli" / "templates" / "gradcheck.yaml").read_text()
    text = re.sub(r"^# ((?:[a-z-]+:|  ).*)$", r"\1", template, flags=re.M)
    text = text.replace("models/encoder.py", "builtin:gru").replace(
        "models/decoder.py:Decoder", "builtin:lstm"
    )
    path = tmp_path / "gradcheck.yaml"
    path.write_text(text)
    configs = load_configs(None, {}, path, tmp_path)
    assert [c.target.raw for c in configs] == ["builtin:gru", "builtin:lstm"]
    assert dict(configs[0].severity) == {"saturated-activations": "warning"}
    assert (
        len(configs[0].reports) == 2
        and configs[0].baseline.resolve() == (tmp_path / "baseline.json").resolve()
    )
