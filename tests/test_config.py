"""Config files: precedence, several targets, policy keys, and an exit-2 error naming the key,
the file and the line for every kind of mistake. No model runs here (torch-free)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from render.reports import vanishing

from gradcheck_cli.config.analyze_config import build_config
from gradcheck_cli.config.configfile import load_configs
from gradcheck_cli.judge.policy import apply_policy
from gradcheck_cli.records.errors import ConfigError
from gradcheck_cli.records.findings import LayerStatus, Severity

FLAGS_NONE: dict[str, object] = {}


def write(tmp_path: Path, text: str, name: str = "gradcheck.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def config_error(tmp_path: Path, text: str, name: str = "gradcheck.yaml") -> ConfigError:
    path = write(tmp_path, text, name)
    with pytest.raises(ConfigError) as info:
        load_configs(None, FLAGS_NONE, None, tmp_path)
    assert f"{path}:" in info.value.message  # the file, then its line
    return info.value


def test_defaults_file_flags_precedence(tmp_path: Path) -> None:
    write(tmp_path, "target: builtin:sigmoid-mlp\nseed: 3\nbatches: 5\narch-opt: {depth: 4, width: 8}\n")
    (config,) = load_configs(None, {"seed": 7, "arch_opts": {"depth": 6}}, None, tmp_path)
    assert config.seed == 7  # flag beats file
    assert config.batches == 5  # file beats default
    assert config.dtype == "float32"  # default
    assert dict(config.arch_opts) == {"depth": 6, "width": 8}  # per key


def test_explicit_config_beats_gradcheck_yaml_which_beats_pyproject(tmp_path: Path) -> None:
    write(tmp_path, '[tool.gradcheck]\ntarget = "builtin:gru"\nseed = 2\n', "pyproject.toml")
    assert load_configs(None, FLAGS_NONE, None, tmp_path)[0].target.raw == "builtin:gru"
    write(tmp_path, "target: builtin:lstm\n")
    assert load_configs(None, FLAGS_NONE, None, tmp_path)[0].target.raw == "builtin:lstm"
    other = write(tmp_path, "target: builtin:transformer\n", "ci.yaml")
    assert load_configs(None, FLAGS_NONE, other, tmp_path)[0].target.raw == "builtin:transformer"


def test_several_targets_each_with_its_own_options(tmp_path: Path) -> None:
    write(
        tmp_path,
        """
        device: cpu
        rules: {saturated-activations: warning}
        targets:
          - target: builtin:residual-mlp
            arch-opt: {depth: 3}
          - target: builtin:sigmoid-mlp
            batches: 2
            rules: {vanishing-gradients: warning}
            ignore: [{id: no-gradient, layers: "teacher.*"}]
        """,
    )
    first, second = load_configs(None, {"seed": 1}, None, tmp_path)
    assert (first.target.raw, second.target.raw) == ("builtin:residual-mlp", "builtin:sigmoid-mlp")
    assert (first.batches, second.batches) == (3, 2)
    assert first.device == second.device == "cpu" and first.seed == second.seed == 1
    assert dict(second.severity) == {"saturated-activations": "warning", "vanishing-gradients": "warning"}
    assert second.ignore == (("no-gradient", ("teacher.*",)),)


def test_a_target_argument_replaces_the_files_target_list(tmp_path: Path) -> None:
    write(tmp_path, "seed: 4\ntargets: [builtin:gru, builtin:lstm]\n")
    (config,) = load_configs("builtin:tanh-mlp", FLAGS_NONE, None, tmp_path)
    assert config.target.raw == "builtin:tanh-mlp" and config.seed == 4


def test_init_template_is_a_valid_config(tmp_path: Path, cli) -> None:
    assert cli("init", str(tmp_path / "gradcheck.yaml")).exit_code == 0
    (config,) = load_configs(None, FLAGS_NONE, None, tmp_path)
    assert config.target.raw == "builtin:residual-mlp"
    assert cli("init", str(tmp_path / "gradcheck.yaml")).exit_code == 2  # no silent overwrite


# Each mistake: (file text, the line it is on, words the message must contain, the hint's suggestion).
CONFIG_ERRORS = {
    "unknown top-level key": ("target: builtin:gru\nbatchs: 3\n", 2, "'batchs'", "batches"),
    "unknown key in a target": (
        "targets:\n  - target: builtin:gru\n    seeds: 1\n", 3, "'targets[0].seeds'", "seed"),
    "wrong type": ("target: builtin:gru\nbatches: three\n", 2, "'batches' must be an integer", None),
    "bool is not an int": ("target: builtin:gru\nseed: true\n", 2, "'seed' must be an integer", None),
    "bad choice": ("target: builtin:gru\nfail-on: warn\n", 2, "'fail-on' must be one of", None),
    "mapping expected": ("target: builtin:gru\narch-opt: depth=3\n", 2, "'arch-opt' must be a mapping", None),
    "unknown rule id": ("target: builtin:gru\nrules:\n  vanishing-gradient: warning\n", 3,
                        "unknown finding id 'vanishing-gradient'", "vanishing-gradients"),
    "bad severity": ("target: builtin:gru\nrules:\n  dead-units: warn\n", 3, "'rules.dead-units' must be one of",
                     "warning"),
    "ignore entry key": ("target: builtin:gru\nignore:\n  - id: no-gradient\n    layer: x\n", 4,
                         "'ignore[0].layer'", "layers"),
    "ignore unknown id": ("target: builtin:gru\nignore:\n  - {id: no-gradients}\n", 3, "'no-gradients'",
                          "no-gradient"),
    "threshold id": ("target: builtin:gru\nthresholds:\n  exploding: {orders: 2}\n", 3, "'exploding'", None),
    "bad input spec": ("target: builtin:gru\ninput: 32xx7\n", 2, "'input'", None),
    "bad target": ("target: 'no good'\n", 1, "'target'", None),
    "report format": ("target: builtin:gru\nreports:\n  - {format: junitxml, output: r.xml}\n", 3,
                      "'reports[0].format'", "junit"),
    "not YAML": ("target: builtin:gru\nseed: [1\n", 3, "not valid YAML", None),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CONFIG_ERRORS))
def test_config_error_names_key_file_and_line(case: str, tmp_path: Path) -> None:
    text, line, words, suggestion = CONFIG_ERRORS[case]
    error = config_error(tmp_path, text)
    assert f"gradcheck.yaml:{line}:" in error.message
    assert words in error.message
    if suggestion:
        assert suggestion in (error.hint or "")


def test_pyproject_error_names_its_line(tmp_path: Path) -> None:
    text = '[project]\nname = "x"\n\n[tool.gradcheck]\ntarget = "builtin:gru"\nbatchs = 2\n'
    error = config_error(tmp_path, text, "pyproject.toml")
    assert "pyproject.toml:6:" in error.message and "'batchs'" in error.message
    assert "batches" in (error.hint or "")


def test_config_error_exits_2_through_the_cli(tmp_path: Path, cli, monkeypatch) -> None:
    write(tmp_path, "target: builtin:gru\nbatches: 2\nlayot: seq-first\n")
    monkeypatch.chdir(tmp_path)
    result = cli("analyze")
    assert result.exit_code == 2
    assert "gradcheck.yaml:3: unknown key 'layot'" in result.stderr
    assert "did you mean 'layout'?" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_flags_are_validated_too() -> None:
    with pytest.raises(ConfigError, match="--baseline-orders"):
        build_config("builtin:gru", {"baseline_orders": -1.0}, {})


def test_policy_overrides_severity_and_ignores_layers() -> None:
    report = apply_policy(
        vanishing(),
        {"vanishing-gradients": "warning", "saturated-activations": "off"},
        [("vanishing-gradients", ("layers.0",))],
    )
    (finding,) = report.findings
    assert finding.severity is Severity.WARNING and finding.layers == ("layers.2",)
    assert report.summary.status == "warning"
    status = {row.stats.name: row.status for row in report.layers}
    assert status["layers.0"] is LayerStatus.OK and status["layers.2"] is LayerStatus.VANISHING


def test_policy_restatuses_layers_with_the_status_function_diagnosis_uses() -> None:
    """After the policy drops findings, each layer's status is what diagnose.layer_status gives for
    the kept findings: a layer measured as gated stays gated (it is a measured fact, not a finding)."""
    from dataclasses import replace

    from gradcheck_cli.judge.diagnose import layer_status

    base = vanishing()
    rows = tuple(
        replace(row, stats=replace(row.stats, gated_by="head.gain"), status=LayerStatus.GATED)
        if row.stats.name == "layers.4"
        else row
        for row in base.layers
    )
    report = apply_policy(replace(base, layers=rows), {"saturated-activations": "off"}, [])
    status = {row.stats.name: row.status for row in report.layers}
    assert status["layers.4"] is LayerStatus.GATED
    assert status == {
        row.stats.name: layer_status([r.stats for r in rows], list(report.findings)).get(
            row.stats.name, LayerStatus.OK
        )
        for row in rows
    }


def test_ignoring_every_layer_drops_the_finding() -> None:
    report = apply_policy(vanishing(), {}, [("vanishing-gradients", ("layers.*",))])
    assert [f.id for f in report.findings] == ["saturated-activations"]
