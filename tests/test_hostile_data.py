"""Hostile data: configs that try to run code, alias bombs, broken files, names that try to drive
the terminal or inject HTML/XML, forwards that raise, and the Python API leaving the model as found.

Each case asserts the exit code and the message; where it applies, that stdout is valid JSON and
that no file changed (no marker file from a code-execution attempt above all).
"""

from __future__ import annotations

import json
import random
import re
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy
import pytest
import torch
from torch import nn

import gradcheck_cli
from gradcheck_cli.config.specs import parse_target
from gradcheck_cli.load import safe_eval
from gradcheck_cli.load.target import load
from gradcheck_cli.records.errors import ConfigError, TargetError
from gradcheck_cli.render import render_reports
from gradcheck_cli.render.compare import render_comparison
from gradcheck_cli.render.escape import md_code, md_text, visible

NET = """
import functools
import os
import subprocess
from subprocess import getoutput

import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, width=4, *extra, **options):
        super().__init__()
        self.fc = nn.Linear(4, width)
        self.head = nn.Linear(width, 2)
        self.extra, self.options = extra, options

    def forward(self, x):
        return self.head(torch.relu(self.fc(x)))


evil = functools.partial(os.system, "touch MARK")


def make_list():
    return [1, 2]


def sample_batch():
    return torch.randn(4, 4), torch.randint(0, 2, (4,))
"""
SHELL = "$(touch MARK) `touch MARK`; touch MARK"
PYTHON = "__import__('os').system('touch MARK')"
JSON_ARGS = ("--format", "json", "--device", "cpu", "--batches", "1")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "net.py").write_text(NET)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def json_or_empty(stdout: str) -> None:
    """stdout holds one JSON document, or nothing at all (exit 2)."""
    if stdout.strip():
        json.loads(stdout)


# --- a config is data: a code-execution attempt through each string it can hold -----------------

CONFIGS = {
    "target-call-dunder": (f'target: "net.py:Net({PYTHON})"', 2, "the name '__import__' is not allowed"),
    "target-call-os": ("target: \"net.py:Net(os.system('touch MARK'))\"", 2, "calling os.system"),
    "target-call-getattr": ('target: "net.py:Net(os.__dict__)"', 2, "the attribute '__dict__'"),
    "target-stdlib-os": ("target: os:system\nmodel: {command: touch MARK}", 2, "'os' is a standard-library"),
    "target-stdlib-subprocess": (
        "target: subprocess:getoutput\nmodel: {cmd: touch MARK}",
        2,
        "'subprocess' is a standard-library",
    ),
    "target-imported-stdlib": ("target: net.py:getoutput\nmodel: {cmd: touch MARK}", 2, "refusing to call"),
    "target-partial": ("target: net.py:evil", 2, "refusing to call evil (from the standard library"),
    "target-installed": ("target: torch.hub:load\nmodel: {repo_or_dir: .}", 2, "outside your project"),
    "model-values": (f'target: net.py:Net\nmodel: {{note: "{PYTHON}", cmd: "{SHELL}"}}', 0, ""),
    "init-key": (f'target: net.py:Net\ninit: {{"{SHELL}": 1}}', 0, ""),
    "arch-opt": (f'target: builtin:sigmoid-mlp\narch-opt: {{depth: "{PYTHON}"}}', 2, "depth"),
    "input": (f'target: net.py:Net\ninput: "{PYTHON}"', 2, "cannot read"),
    "device": (f'target: net.py:Net\ndevice: "{SHELL}"', 2, "device"),
    "loss": (f'target: net.py:Net\nloss: "{PYTHON}"', 2, "loss"),
    "target-arg": (f'target: net.py:Net\ntarget-arg: "{PYTHON}"', 2, "forward() has no parameter"),
    "baseline": (f'target: net.py:Net\nbaseline: "{SHELL}"', 2, "baseline"),
    "thresholds": (f'target: net.py:Net\nthresholds: {{"{PYTHON}": {{orders: 1}}}}', 2, "unknown finding id"),
    "rules": (f'target: net.py:Net\nrules: {{vanishing-gradients: "{PYTHON}"}}', 2, "must be one of"),
    "ignore": (f'target: net.py:Net\nignore: [{{id: "{PYTHON}"}}]', 2, "unknown finding id"),
    "targets": (f'targets: ["net.py:Net({PYTHON})"]', 2, "not allowed"),
    "format": (f'target: net.py:Net\nformat: "{SHELL}"', 2, "format"),
    "layout": (f'target: net.py:Net\nlayout: "{PYTHON}"', 2, "layout"),
    "yaml-python-tag": ('target: !!python/object/apply:os.system ["touch MARK"]', 2, "not valid YAML"),
}


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_config_strings_never_run_code(cli, project: Path, case: str) -> None:
    text, code, message = CONFIGS[case]
    (project / "gradcheck.yaml").write_text(text.replace("MARK", str(project / "MARK")) + "\n")
    before = files(project)
    result = cli("analyze", "--format", "json", "--batches", "1")  # no flag hides a config key
    assert not (project / "MARK").exists()
    assert result.exit_code == code, result
    assert message in result.stderr, result
    assert "Traceback" not in result.stderr
    json_or_empty(result.stdout)
    after = files(project)
    assert {k: v for k, v in after.items() if "__pycache__" not in k} == before


def test_pyproject_and_command_line_strings_never_run_code(cli, project: Path) -> None:
    (project / "pyproject.toml").write_text(
        f'[tool.gradcheck]\ntarget = "net.py:Net({PYTHON})"\n'.replace("MARK", str(project / "MARK"))
    )
    result = cli("analyze", *JSON_ARGS)
    assert result.exit_code == 2 and "the name '__import__' is not allowed" in result.stderr
    marker = str(project / "MARK")
    result = cli(
        "analyze", "net.py:Net", "--init", f"x=!!python/object/apply:os.system [touch {marker}]", *JSON_ARGS
    )
    assert result.exit_code == 2 and "cannot read the value in --init" in result.stderr
    result = cli("analyze", f"net.py:Net(os.system('touch {marker}'))", *JSON_ARGS)
    assert result.exit_code == 2 and "calling os.system" in result.stderr and result.stdout == ""
    assert not (project / "MARK").exists()


def test_error_lines_show_escape_sequences_from_user_code(cli, project: Path) -> None:
    (project / "loud.py").write_text(
        NET.replace(
            "return self.head(",
            'raise ValueError("\\x1b]0;pwned\\x07\\x1b[2J bad")\n        return self.head(',
        )
    )
    result = cli("analyze", "loud.py:Net", *JSON_ARGS)
    assert result.exit_code == 2 and result.stdout == ""
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "raised ValueError: \\x1b]0;pwned\\x07\\x1b[2J bad" in result.stderr


def test_output_paths_are_paths_never_commands(cli, project: Path) -> None:
    """`output` and `reports` outputs with shell syntax are file names, written as such."""
    name = "$(touch MARK)`touch MARK`.json"
    (project / "gradcheck.yaml").write_text(
        f"target: net.py:Net\noutput: '{name}'\nreports: [{{format: junit, output: '{name}.xml'}}]\n"
    )
    result = cli("analyze", "--format", "json", "--device", "cpu", "--batches", "1")
    assert result.exit_code == 0, result
    assert not (project / "MARK").exists()
    json.loads((project / name).read_text())
    ET.parse(project / f"{name}.xml")


# --- YAML and TOML that are not a config -----------------------------------------------------------


def billion_laughs(levels: int = 9) -> str:
    lines = [
        "target: builtin:sigmoid-mlp",
        "model:",
        '  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
    ]
    for prev, name in zip("abcdefghijklmnop", "bcdefghijklmnop"[: levels - 1], strict=False):
        lines.append(f"  {name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def read_seconds(path: Path) -> float:
    """How long the config reader takes to refuse `path` (the CLI around it is timed elsewhere)."""
    from gradcheck_cli.config.configfile import read_source

    started = time.perf_counter()
    with pytest.raises(ConfigError):
        read_source(path)
    return time.perf_counter() - started


def test_alias_bomb_is_refused_fast(cli, project: Path) -> None:
    text = billion_laughs()
    assert len(text) < 700
    (project / "bomb.yaml").write_text(text)
    assert read_seconds(project / "bomb.yaml") < 1.0
    result = cli("analyze", "--config", "bomb.yaml", *JSON_ARGS)
    assert result.exit_code == 2 and result.stdout == ""
    assert "bomb.yaml:8: YAML aliases (*name) here expand to more than 100,000 values" in result.stderr


def test_recursive_alias_is_refused(cli, project: Path) -> None:
    (project / "rec.yaml").write_text("target: net.py:Net\nmodel: &m {inner: *m}\n")
    result = cli("analyze", "--config", "rec.yaml", *JSON_ARGS)
    assert result.exit_code == 2 and result.stdout == ""
    assert "rec.yaml:2: a YAML alias refers to the value that contains it" in result.stderr


def test_deep_nesting_is_refused_fast(cli, project: Path) -> None:
    (project / "deep.yaml").write_text("target: " + "[" * 20000 + "]" * 20000 + "\n")
    assert read_seconds(project / "deep.yaml") < 1.0
    result = cli("analyze", "--config", "deep.yaml", *JSON_ARGS)
    assert result.exit_code == 2 and "deep.yaml:1: nested more than 64 levels deep" in result.stderr
    (project / "pyproject.toml").write_text("[tool.gradcheck]\nx = " + "[" * 20000 + "]" * 20000 + "\n")
    result = cli("analyze", *JSON_ARGS)
    assert result.exit_code == 2 and "the TOML is nested too deeply" in result.stderr, result


def test_ordinary_anchors_and_merge_keys_still_work(project: Path) -> None:
    from gradcheck_cli.config.configfile import load_configs

    (project / "gradcheck.yaml").write_text(
        "targets:\n  - &common {batches: 1, device: cpu, target: net.py:Net}\n"
        "  - <<: *common\n    target: builtin:sigmoid-mlp\n"
    )
    configs = load_configs(None, {}, None, project)
    assert [c.batches for c in configs] == [1, 1] and configs[1].target.location == "sigmoid-mlp"


def test_non_utf8_config_names_file_and_line(cli, project: Path) -> None:
    (project / "gradcheck.yaml").write_bytes(b"target: net.py:Net\n# caf\xe9\nbatches: 1\n")
    result = cli("analyze", *JSON_ARGS)
    assert result.exit_code == 2 and result.stdout == ""
    assert "gradcheck.yaml:2: not UTF-8 text (byte 0xe9 at column 6)" in result.stderr
    assert "Traceback" not in result.stderr


def test_broken_yaml_names_file_and_line(cli, project: Path) -> None:
    (project / "gradcheck.yaml").write_text("target: net.py:Net\nbatches: [1, 2\nseed: 3\n")
    result = cli("analyze", *JSON_ARGS)
    assert result.exit_code == 2 and result.stdout == ""
    assert re.search(r"gradcheck\.yaml:\d: not valid YAML", result.stderr), result


def test_broken_tool_gradcheck_toml_names_file_and_line(cli, project: Path) -> None:
    (project / "pyproject.toml").write_text('[tool.gradcheck]\ntarget = "net.py:Net"\nbatches = = 1\n')
    result = cli("analyze", *JSON_ARGS)
    assert result.exit_code == 2 and result.stdout == ""
    assert "pyproject.toml:3: not valid TOML" in result.stderr


def test_broken_pyproject_of_another_tool_does_not_break_analyze(cli, project: Path) -> None:
    (project / "pyproject.toml").write_text('[project]\nname = = "x"\n')
    result = cli("analyze", "net.py:Net", *JSON_ARGS)
    assert result.exit_code == 0, result
    json.loads(result.stdout)


# --- the call form: data, evaluated by safe_eval ----------------------------------------------------


def test_module_level_getattr_names_resolve(project: Path) -> None:
    (project / "lazy.py").write_text(
        NET
        + "\n\ndef __getattr__(name):\n    if name == 'Lazy':\n        return Net\n    raise AttributeError(name)\n"
    )
    assert load(parse_target("lazy.py:Lazy(5)"), {}, {}).module.fc.out_features == 5


def test_starred_arguments_are_expanded_not_dropped(project: Path) -> None:
    ref = parse_target('net.py:Net(*[6, "a"], **{"depth": 3, "name": "x"})')
    model = load(ref, {}, {}).module
    assert model.fc.out_features == 6
    assert model.extra == ("a",) and model.options == {"depth": 3, "name": "x"}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("Net(lambda: 1)", "a lambda is not allowed"),
        ("Net([x for x in range(3)])", "a list comprehension is not allowed"),
        ("Net(1 + 2)", "an operator is not allowed"),
        ("Net(sizes[0])", "a subscript is not allowed"),
        ("Net(f'{x}')", "an f-string is not allowed"),
        ("Net(Net.__init__)", "the attribute '__init__'"),
        ("Net(__builtins__)", "the name '__builtins__'"),
        ("Net(eval('1'))", "'eval' in the call"),
        ("Net(a=1, **{'a': 2})", "the keyword 'a' given twice"),
        ("Net(*3)", "`*` of something other than a list or tuple"),
    ],
)
def test_call_form_refusals_name_the_offending_part(call: str, message: str) -> None:
    policy = safe_eval.Policy(
        lookup=lambda name: {"Net": dict}[name], refuse_call=lambda f: None, refuse_value=lambda v: None
    )
    with pytest.raises(TargetError, match=re.escape(message)):
        safe_eval.evaluate_call(call, policy)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("net.py:Net(os.system)", "passing system (from the standard library)"),
        ("net.py:Net(subprocess.Popen)", "passing Popen (from the standard library)"),
        ("net.py:Net(os)", "passing the module 'os'"),
        ("net.py:Net(*[os.system])", "passing system"),
        ("net.py:Net(getoutput('touch MARK'))", "calling getoutput (from the standard library"),
        ("net.py:Net(functools.partial(os.system, 'touch MARK')())", "calling functools.partial"),
        ("net.py:Net(torch.load('x.pt'))", "calling torch.load (from torch.serialization"),
        ("net.py:__builtins__", "names starting with '_' are not model attributes"),
    ],
)
def test_call_form_never_calls_or_passes_the_standard_library(
    project: Path, target: str, message: str
) -> None:
    with pytest.raises(TargetError, match=re.escape(message)):
        load(parse_target(target.replace("MARK", str(project / "MARK"))), {}, {})
    assert not (project / "MARK").exists()


def test_call_form_passes_plain_types_and_project_objects(project: Path) -> None:
    model = load(
        parse_target("net.py:Net(8, nn.ReLU(), torch.float64, make_list, -2.5, b'x', {1, 2})"), {}, {}
    ).module
    assert model.fc.out_features == 8
    assert isinstance(model.extra[0], nn.ReLU) and model.extra[1] is torch.float64
    assert model.extra[3:] == (-2.5, b"x", {1, 2})


def test_installed_dataclass_configs_may_be_built_other_classes_not(project: Path) -> None:
    """A config dataclass from an installed package is data; an installed class that runs things
    (think pexpect.spawn) is not called."""
    site = project / "venv" / "lib" / "site-packages"
    site.mkdir(parents=True)
    (site / "thirdparty.py").write_text(
        "import dataclasses\n\n@dataclasses.dataclass\nclass Cfg:\n    width: int = 3\n\n"
        "class Spawn:\n    def __init__(self, cmd):\n        open('MARK', 'w').write(cmd)\n"
    )
    (project / "uses.py").write_text(NET + "\nfrom thirdparty import Cfg, Spawn\n")
    sys.path.insert(0, str(site))
    model = load(parse_target("uses.py:Net(4, Cfg(width=5))"), {}, {}).module
    assert model.extra[0].width == 5
    with pytest.raises(TargetError, match="calling Spawn .from thirdparty: outside your project"):
        load(parse_target("uses.py:Net(Spawn('x'))"), {}, {})
    assert not (project / "MARK").exists()


def test_installed_module_class_is_allowed_and_result_checked(cli, project: Path) -> None:
    result = cli("analyze", "torch.nn:Linear(4, 2)", "--input", "4x4", *JSON_ARGS)
    assert result.exit_code in (0, 1), result
    assert json.loads(result.stdout)["model"]["class"] == "Linear"
    result = cli("analyze", "net.py:make_list", *JSON_ARGS)
    assert result.exit_code == 2 and result.stdout == ""
    assert "make_list() returned list, not an nn.Module" in result.stderr


# --- names that try to drive the terminal, break XML or inject HTML ----------------------------------

EVIL = "a\x00b\x1b[31mred\x1b]8;;http://x\x07[bold]B[/bold]<img src=x onerror=alert(1)>`t`[l](http://e)|p\x01"
EVIL += "".join(map(chr, range(32))) + "\x7f\x9b"  # every C0 control, DEL and the C1 CSI


class EvilNames(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.add_module(EVIL, nn.Linear(4, 4))
        self.add_module("[bold]" + EVIL, nn.Linear(4, 4))  # never used: a no-gradient finding names it
        self.out = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(getattr(self, EVIL)(x)))


@pytest.fixture(scope="module")
def evil_report() -> Any:
    torch.manual_seed(0)
    return gradcheck_cli.analyze(EvilNames(), inputs=torch.randn(8, 4), batches=1, name=EVIL)


def test_junit_is_valid_xml_with_control_characters_in_names(evil_report) -> None:
    text = render_reports("junit", [evil_report])
    root = ET.fromstring(text.split("\n", 1)[1])
    assert "\\x1b[31mred" in text and "\x1b" not in text and "\x00" not in text
    assert any(f.get("type") == "no-gradient" for f in root.iter("failure"))


def test_markdown_has_no_raw_html_or_links_from_names(evil_report) -> None:
    text = render_reports("markdown", [evil_report])
    outside_code = re.sub(r"(`+)(?:(?!\1).)*?\1", "", text.replace("\\`", ""))
    assert "<img" not in outside_code and not re.search(r"(?<!\\)\]\(http://e\)", outside_code)
    assert "\x1b" not in text and "\x00" not in text
    assert md_code(visible(EVIL, keep_newlines=False)) in text  # the name itself, in a code span


def test_terminal_prints_no_escape_sequence_and_no_markup(evil_report) -> None:
    text = render_reports("rich", [evil_report], width=400, color=True)
    names = "".join(c for c in text if c not in "\n")
    assert "\x1b]8" not in names and "\x07" not in names and "\x00" not in names
    plain = render_reports("rich", [evil_report], width=400)
    assert "\x1b" not in plain and "[bold]B[/bold]" in plain and "\\x1b[31mred" in plain


def test_json_keeps_names_exactly(evil_report) -> None:
    doc = json.loads(render_reports("json", [evil_report]))
    assert EVIL in [layer["name"] for layer in doc["layers"]]


def test_html_escapes_names(evil_report) -> None:
    text = render_reports("html", [evil_report])
    assert "<img src=x" not in text and "&lt;img src=x" in text and "\x1b" not in text


def test_compare_prints_names_from_report_files_as_text(evil_report, tmp_path: Path) -> None:
    from gradcheck_cli.judge.baseline import compare_documents

    doc = json.loads(render_reports("json", [evil_report]))
    text = render_comparison(compare_documents(doc, doc), width=400)
    assert "\x1b" not in text and "[bold]B[/bold]" in text


def test_github_annotations_cannot_inject_commands_or_escapes(evil_report, tmp_path: Path) -> None:
    from gradcheck_cli.render.annotations import github_annotations

    lines = github_annotations(evil_report, tmp_path)
    assert lines and all("\n" not in line and "\x1b" not in line and "\x07" not in line for line in lines)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[1, 2]", "is not a gradcheck.report/1 report"),
        (
            b'{"schema": "gradcheck.report/1", "layers": [{"name": 1}], "findings": "x"}',
            "'layers' must be a list",
        ),
        (b'{"schema": "gradcheck.report/1", "layers": [], "findings": [3]}', "'findings' must be a list"),
        (b"\xff\xfe{}", "is not UTF-8 text"),
        (b'{"schema": ', "base.json:1: not valid JSON"),
    ],
)
def test_baseline_of_the_wrong_shape_is_exit_2(cli, project: Path, content: bytes, message: str) -> None:
    (project / "base.json").write_bytes(content)
    result = cli("analyze", "net.py:Net", "--baseline", "base.json", *JSON_ARGS)
    assert result.exit_code == 2 and result.stdout == "", result
    assert message in result.stderr and "Traceback" not in result.stderr
    result = cli("compare", "base.json", "base.json")
    assert result.exit_code == 2 and message in result.stderr, result


def test_compare_of_folders_is_exit_2(cli, project: Path) -> None:
    result = cli("compare", str(project), str(project))
    assert result.exit_code == 2 and "is a folder" in result.stderr, result


def test_markdown_helpers_survive_backticks_and_html() -> None:
    assert md_code("a``b") == "```a``b```" and md_code("`x") == "`` `x ``"
    assert md_text("<b>[x](y)</b>") == "&lt;b&gt;\\[x\\](y)&lt;/b&gt;"


# --- a forward that raises names the user's frame -----------------------------------------------------

BAD_POOL = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(8)
        self.fc = nn.Linear(256, 10)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        x = self.pool(x).flatten(1)
        return self.fc(x)
"""
SAMPLE = "\n\ndef sample_batch():\n    return torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))\n"


def test_raising_forward_with_sample_batch_is_a_model_bug(cli, project: Path) -> None:
    (project / "pool.py").write_text(BAD_POOL + SAMPLE)
    result = cli("analyze", "pool.py", *JSON_ARGS)
    assert result.exit_code == 2 and result.stdout == ""
    assert (
        "error: Net.forward (pool.py:16): self.fc(...) raised RuntimeError: mat1 and mat2 shapes cannot be "
        "multiplied (4x512 and 256x10)" in result.stderr
    )
    assert "in fc: Linear(256 -> 10), got 512 features (float32[4x512])" in result.stderr
    assert "inputs tried (sample_batch() in the model file): (float32[4x3x32x32])" in result.stderr
    assert (
        "hint: the inputs came from sample_batch() in the model file, so this looks like a bug in the model at pool.py:16"
        in result.stderr
    )


def test_raising_forward_with_inferred_inputs_hints_input(cli, project: Path) -> None:
    (project / "pool.py").write_text(BAD_POOL)
    result = cli("analyze", "pool.py", *JSON_ARGS)
    assert result.exit_code == 2 and result.stdout == ""
    assert "Net.forward (pool.py:16): self.fc(...) raised RuntimeError" in result.stderr
    assert (
        "hint: gradcheck guessed these inputs" in result.stderr
        or "hint: pass the input shape" in result.stderr
    )


def test_given_input_that_does_not_fit_the_first_layer_says_so(cli, project: Path) -> None:
    (project / "pool.py").write_text(BAD_POOL)
    result = cli("analyze", "pool.py", "--input", "4x1x32x32", *JSON_ARGS)
    assert result.exit_code == 2 and result.stdout == ""
    assert "in conv: Conv2d(3 -> 8), got 1 channels" in result.stderr
    assert "hint: conv takes the inputs from --input as they are, and they do not fit it" in result.stderr


# --- the Python API hands the model back exactly as it found it ---------------------------------------


class Trained(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.bn, self.drop = nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Dropout(0.5)
        self.fc2, self.frozen = nn.Linear(8, 3), nn.Linear(3, 3)
        self.frozen.requires_grad_(False)
        self.calls, self.fail_at, self.fail_with = 0, 0, RuntimeError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        random.random()  # user code drawing from every global stream (stochastic depth, augmentation)
        numpy.random.rand()
        h = self.drop(torch.relu(self.bn(self.fc1(x))))
        if self.fail_at and self.calls >= self.fail_at:  # after BatchNorm has moved its statistics
            raise self.fail_with("boom")
        return self.frozen(self.fc2(h))


def fingerprint(model: nn.Module) -> dict[str, Any]:
    """Every tensor's value, dtype, device, identity and gradient; flags; hook counts; RNG states."""
    out: dict[str, Any] = {}
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        grad = None if t.grad is None else (id(t.grad), t.grad.clone())
        out[name] = (t.detach().clone(), t.dtype, t.device, t.requires_grad, id(t), grad)
    out["training"] = [(n, m.training) for n, m in model.named_modules()]
    out["hooks"] = [(n, len(m._forward_hooks), len(m._forward_pre_hooks)) for n, m in model.named_modules()]
    out["rng"] = (torch.get_rng_state(), random.getstate(), numpy.random.get_state()[1].tolist())
    return out


def assert_same(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert before.keys() == after.keys()
    for key, (old, new) in ((k, (before[k], after[k])) for k in before):
        if key == "rng":
            assert torch.equal(old[0], new[0]) and old[1:] == new[1:], "RNG state changed"
        elif key in ("training", "hooks"):
            assert old == new, key
        else:
            assert torch.equal(old[0], new[0]) and old[1:5] == new[1:5], key
            assert (old[5] is None) == (new[5] is None), f"{key}.grad"
            if old[5] is not None:
                assert old[5][0] == new[5][0] and torch.equal(old[5][1], new[5][1]), f"{key}.grad"


@pytest.fixture
def trained() -> Trained:
    model = Trained()
    model.train()
    model.drop.eval()  # a Dropout left in eval inside a model in train
    model.fc1.weight.grad = torch.full_like(model.fc1.weight, 0.5)
    model.register_forward_hook(lambda *args: None)
    torch.manual_seed(123)
    random.seed(5)
    return model


@pytest.mark.parametrize("options", [{}, {"steps": 2}, {"dtype": "float64"}], ids=["plain", "steps", "dtype"])
def test_api_leaves_the_model_as_found(trained: Trained, options: dict[str, Any]) -> None:
    before = fingerprint(trained)
    report = gradcheck_cli.analyze(trained, inputs="4x6", batches=2, **options)
    assert report.layers
    assert_same(before, fingerprint(trained))


@pytest.mark.parametrize("failure", [RuntimeError, KeyboardInterrupt, "loss"])
def test_api_leaves_the_model_as_found_when_it_fails(trained: Trained, failure: Any) -> None:
    before = fingerprint(trained)
    loss_fn = None
    if failure == "loss":

        def loss_fn(output: torch.Tensor, target: Any = None) -> torch.Tensor:
            raise ValueError("loss broke")
    else:
        trained.fail_at, trained.fail_with = 3, failure
    with pytest.raises(BaseException) as raised:
        gradcheck_cli.analyze(trained, inputs="4x6", batches=3, loss_fn=loss_fn)
    assert not isinstance(raised.value, AssertionError)
    trained.calls, trained.fail_at = 0, 0
    assert_same(before, fingerprint(trained))


def test_api_leaves_lazy_modules_unmaterialised() -> None:
    model = nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.Linear(8, 2))
    gradcheck_cli.analyze(model, inputs="4x6", batches=1)
    assert type(model[0]) is nn.LazyLinear and nn.parameter.is_lazy(model[0].weight)
    assert model(torch.randn(4, 5)).shape == (4, 2)  # still lazy: any input width works
