"""Hostile cases against the process side of the gate, run as a user runs gradcheck: a fresh
`gradcheck` process (the supervised path, a worker process per analysis), never CliRunner.

Each case asserts the exit code, the `error:` line, that stdout is empty or one valid JSON
document, and that no file in the folder changed. The cheap cases fail in the supervisor, before
any worker starts (no torch import); the others use one-layer models so a run costs its torch import.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

GRADCHECK = Path(sys.executable).with_name("gradcheck")

TINY = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        {body}

def sample_batch():
    return torch.randn(8, 4)
"""


def model_file(folder: Path, body: str = "return self.fc(x)", top: str = "", name: str = "model.py") -> Path:
    """A one-layer model whose forward runs `body`; `top` runs at import."""
    path = folder / name
    path.write_text(textwrap.dedent(top) + TINY.format(body=body))
    return path


def gradcheck(*args: str, cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "GRADCHECK_IN_PROCESS"}  # the supervised path
    env["COLUMNS"] = "200"
    return subprocess.run(
        [str(GRADCHECK), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def assert_could_not_run(done: Any, *words: str) -> str:
    """Exit 2, nothing on stdout, one error: line holding `words`, a hint:, no traceback."""
    assert getattr(done, "returncode", getattr(done, "exit_code", None)) == 2, done
    assert done.stdout == "", done.stdout
    errors = error_lines(done.stderr)
    assert len(errors) == 1, done.stderr
    for word in words:
        assert word in errors[0], done.stderr
    assert "\nhint: " in "\n" + done.stderr
    assert "Traceback" not in done.stderr
    return errors[0]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    model_file(tmp_path)
    return tmp_path


# --- bad arguments: refused before any analysis starts ---------------------------------------------
# The supervisor is not the subject here (the checks run before it starts a worker): in-process.

BAD_ARGUMENTS = [
    (["--lr", "-1", "--steps", "2"], ["--lr", "positive finite"]),
    (["--lr", "nan"], ["--lr", "nan"]),
    (["--seed", str(2**63)], ["--seed", "2^63-1"]),
    (["--seed", "-1"], ["--seed"]),
    (["--input", "int:4x4:99999999999999999999"], ["64-bit"]),
    (["--input", "float:8x4:-inf..inf"], ["not finite"]),
    (["--input", "100000x100000x10000"], ["too large to allocate"]),
    (["--timeout", "0"], ["--timeout"]),
    (["--arch-opt", "depth=3"], ["--arch-opt", "builtin:NAME"]),
    (["--output", "."], ["is a folder"]),
    (["--output", "model.py"], ["model file itself"]),
    (["--output", "model.py/report.json"], ["is a file, not a folder"]),
]


@pytest.fixture
def in_folder(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(folder)
    return folder


@pytest.mark.parametrize(("args", "words"), BAD_ARGUMENTS, ids=[" ".join(a) for a, _ in BAD_ARGUMENTS])
def test_bad_arguments_exit_2_before_the_analysis(
    cli, in_folder: Path, args: list[str], words: list[str]
) -> None:
    before = digest(in_folder)
    assert_could_not_run(cli("analyze", "model.py", *args), *words)
    assert digest(in_folder) == before


@pytest.mark.parametrize(
    ("opt", "words"), [("depth=-3", ["depth", "1 to 1000"]), ("activation=swish", ["activation", "one of"])]
)
def test_builtin_options_are_checked_against_their_documented_range(cli, opt: str, words: list[str]) -> None:
    assert_could_not_run(cli("analyze", "builtin:tanh-mlp", "--arch-opt", opt), *words)


def test_output_never_replaces_python_source(cli, in_folder: Path) -> None:
    (in_folder / "other.py").write_text("x = 1\n")
    before = digest(in_folder)
    assert_could_not_run(cli("analyze", "builtin:tanh-mlp", "-o", "other.py"), "Python source")
    assert digest(in_folder) == before


def test_compare_and_init_on_a_folder_are_clean_errors(cli, in_folder: Path) -> None:
    (in_folder / "reports").mkdir()
    assert_could_not_run(cli("compare", "reports", "reports"), "reports")
    assert_could_not_run(cli("init", "--force", "reports"), "is a folder")
    assert list((in_folder / "reports").iterdir()) == []


def test_debug_adds_the_traceback_and_keeps_exit_2(cli, in_folder: Path) -> None:
    done = cli("compare", "model.py", "model.py", "--debug")
    assert done.exit_code == 2
    assert "Traceback (most recent call last)" in done.stderr
    assert len(error_lines(done.stderr)) == 1


def test_a_broken_pyproject_that_configures_gradcheck_is_named(cli, in_folder: Path) -> None:
    (in_folder / "pyproject.toml").write_text("[tool.gradcheck\nbatches = 1\n")
    assert_could_not_run(cli("analyze", "builtin:tanh-mlp"), "pyproject.toml", "TOML")


def test_a_broken_pyproject_of_another_tool_does_not_block_a_run(cli, in_folder: Path) -> None:
    (in_folder / "pyproject.toml").write_text("[project\nname = 'x'\n")
    done = cli(
        "analyze", "builtin:residual-mlp", "--arch-opt", "depth=1", "--batches", "1", "--format", "json"
    )
    assert done.exit_code == 0, done
    assert json.loads(done.stdout)["target"] == "builtin:residual-mlp"


# --- user code that ends, crashes or hangs the analysis --------------------------------------------

DYING = [
    ("import os\nos._exit(0)\n", "return self.fc(x)", "exit code 0"),
    ("", "import os; os._exit(1)", "exit code 1"),
    ("", "import ctypes; ctypes.string_at(0)", "SIGSEGV"),
]


@pytest.mark.parametrize(
    ("top", "body", "why"), DYING, ids=["os._exit(0) at import", "os._exit(1)", "segfault"]
)
def test_user_code_that_ends_the_process_is_exit_2(folder: Path, top: str, body: str, why: str) -> None:
    model_file(folder, body, top)
    before = digest(folder)
    line = assert_could_not_run(
        gradcheck("analyze", "model.py", "--format", "json", cwd=folder), "without a report", why
    )
    assert "model.py" in line  # the target, and the stage it was in
    assert digest(folder) == before


def test_a_hang_is_stopped_by_timeout_naming_the_stage(folder: Path) -> None:
    model_file(folder, "import time; time.sleep(600)")
    started = time.perf_counter()
    done = gradcheck("analyze", "model.py", "--timeout", "2", "--format", "json", cwd=folder)
    assert_could_not_run(done, "timed out after 2 s", "measuring")
    assert time.perf_counter() - started < 60


def test_ctrl_c_is_exit_2_and_stops_the_worker(folder: Path) -> None:
    marker = folder / "forward.pid"
    model_file(
        folder, f"import os, time; open({str(marker)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    )
    env = {k: v for k, v in os.environ.items() if k != "GRADCHECK_IN_PROCESS"}
    process = subprocess.Popen(
        [str(GRADCHECK), "analyze", "model.py"], cwd=folder, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 2, stderr
    assert stdout == ""
    assert "error: interrupted (Ctrl-C) while measuring" in stderr
    worker = int(marker.read_text())
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(worker, 0)


def test_sys_exit_in_build_model_is_exit_2_naming_the_line(tmp_path: Path) -> None:
    (tmp_path / "model.py").write_text("import sys\n\ndef build_model():\n    sys.exit(0)\n")
    assert_could_not_run(gradcheck("analyze", "model.py", cwd=tmp_path), "sys.exit(0)", "model.py:4")


# One worker analyses every target of a config file in turn: each raising case is one target.
RAISING = {
    "exit_in_forward.py": ("import sys; sys.exit(0)", "sys.exit(0)"),
    "interrupt_in_forward.py": ("raise KeyboardInterrupt", "interrupted"),
    "frozen.py": ("self.fc.requires_grad_(False); return self.fc(x)", "no trainable parameter"),
    "detached.py": ("return self.fc(x).detach()", "does not depend on any trainable parameter"),
    "constant.py": ("return torch.tensor(1.0)", "does not depend on any trainable parameter"),
    "healthy.py": ("return self.fc(x)", None),
}


def test_every_target_runs_and_each_failure_is_named_in_its_line_and_the_reports(tmp_path: Path) -> None:
    for name, (body, _) in RAISING.items():
        model_file(tmp_path, body, name=name)
    frozen = tmp_path / "frozen.py"  # frozen before the analysis, not inside forward
    frozen.write_text(
        frozen.read_text().replace(
            "self.fc = nn.Linear(4, 3)", "self.fc = nn.Linear(4, 3).requires_grad_(False)"
        )
    )
    targets = "".join(f"  - {name}\n" for name in RAISING)
    (tmp_path / "gradcheck.yaml").write_text(
        f"targets:\n{targets}format: json\noutput: out/report.json\n"
        "reports:\n  - {format: junit, output: out/report.xml}\n  - {format: markdown, output: out/report.md}\n"
    )
    before = digest(tmp_path)
    done = gradcheck("analyze", cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done
    assert done.stdout == ""
    errors = error_lines(done.stderr)
    assert len(errors) == len(RAISING) - 1, done.stderr
    for name, (_, words) in RAISING.items():
        if words is not None:
            assert any(line.startswith(f"error: {name}: ") and words in line for line in errors), (
                name,
                errors,
            )
    document = json.loads((tmp_path / "out/report.json").read_text())
    assert [r["target"] for r in document["reports"]] == ["healthy.py"]
    assert {e["target"] for e in document["errors"]} == set(RAISING) - {"healthy.py"}
    import xml.etree.ElementTree as ET

    junit = ET.parse(tmp_path / "out/report.xml").getroot()
    assert junit.get("errors") == str(len(RAISING) - 1)
    assert "could not run" in (tmp_path / "out/report.md").read_text()
    after = digest(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("out/")} == before


# --- streams, argv and the standard library --------------------------------------------------------

NOISY_TOP = """
import argparse, atexit, os, sys, threading, time
os.write(1, b"os.write at import\\n")
print("print to sys.__stdout__", file=sys.__stdout__)
sys.__stdout__.flush()
atexit.register(lambda: print("atexit print", file=sys.__stdout__, flush=True))

def chatter():
    for _ in range(200):
        print("thread print", flush=True)
        time.sleep(0.005)

threading.Thread(target=chatter, daemon=True).start()
ARGS = argparse.ArgumentParser().parse_args()  # sees the model file alone, not gradcheck's flags
"""


SUPERVISOR_MODULES = """
import sys
sys.path[:] = [p for p in sys.path if p not in ("", ".")]  # as the `gradcheck` script: no cwd first
import json
from gradcheck_cli.run.cli import main
sys.argv = ["gradcheck", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    print(json.dumps({"code": exc.code, "torch": "torch" in sys.modules}), file=sys.stderr)
"""


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One supervised run shared by the three tests below (a fresh CLI process costs ~4 s of CPU):
    a model that prints to stdout every way it can and parses argv, beside a user `html.py` and
    `xml/` package, configured for HTML and JUnit reports; the CLI runs from a script that says
    at its exit whether torch was imported in the CLI's own process."""
    folder = tmp_path_factory.mktemp("noisy")
    model_file(
        folder,
        'import os; os.write(1, b"os.write in forward\\n"); print("print in forward"); return self.fc(x)',
        NOISY_TOP,
    )
    (folder / "html.py").write_text("raise RuntimeError('the user html.py was imported')\n")
    (folder / "xml").mkdir()
    (folder / "xml" / "__init__.py").write_text("raise RuntimeError('the user xml package was imported')\n")
    (folder / "gradcheck.yaml").write_text(
        "target: model.py\nformat: json\nfail-on: never\nreports:\n"
        "  - {format: html, output: r.html}\n  - {format: junit, output: r.xml}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "GRADCHECK_IN_PROCESS"}
    done = subprocess.run(
        [sys.executable, "-c", SUPERVISOR_MODULES, "analyze", "--format", "json", "--fail-on", "never"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    return done, folder


def test_stdout_carries_only_the_report_whatever_the_model_prints(noisy_run) -> None:
    done, _ = noisy_run
    assert json.loads(done.stderr.strip().splitlines()[-1])["code"] == 0, done.stderr
    assert json.loads(done.stdout)["schema"] == "gradcheck.report/1"
    for text in ("os.write at import", "print to sys.__stdout__", "os.write in forward", "atexit print"):
        assert text in done.stderr


def test_stdlib_names_beside_the_model_do_not_shadow_gradcheck(noisy_run) -> None:
    done, folder = noisy_run
    assert json.loads(done.stdout)["summary"]["status"], done.stderr
    assert "<html" in (folder / "r.html").read_text().lower()
    assert "<testsuites" in (folder / "r.xml").read_text()


def test_the_supervisor_never_imports_torch_the_worker_does(noisy_run) -> None:
    done, _ = noisy_run
    assert json.loads(done.stdout)["layers"], done.stderr  # the worker measured the model
    assert json.loads(done.stderr.strip().splitlines()[-1]) == {"code": 0, "torch": False}


# --- progress when stderr is not a terminal ---------------------------------------------------------


def test_progress_lines_name_the_stage_the_target_and_the_elapsed_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io

    from gradcheck_cli.run import progress as progress_module

    clock = [100.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: clock[0])
    stream = io.StringIO()
    lines = progress_module.LineProgress(["a.py", "builtin:gru"], stream=stream, after=5.0, every=30.0)
    lines.stage(0, "loading a.py")
    clock[0] += 1.0
    lines.tick()
    assert stream.getvalue() == ""  # a short run prints nothing
    clock[0] += 5.0
    lines.tick()  # the same stage, now past 5 s: one line
    lines.stage(1, "measuring batch 10 of 1000000 on cpu")  # later stages: a line each
    clock[0] += 31.0
    lines.tick()
    assert stream.getvalue().splitlines() == [
        "gradcheck [6.0s] a.py: loading a.py",
        "gradcheck [6.0s] builtin:gru: measuring batch 10 of 1000000 on cpu",
        "gradcheck [37.0s] still 31.0s into builtin:gru: measuring batch 10 of 1000000 on cpu",
    ]


def test_a_worker_that_dies_is_described_by_its_exit_code_or_signal() -> None:
    from gradcheck_cli.run.supervisor import describe_exit

    assert describe_exit(0) == "exit code 0"
    assert describe_exit(-signal.SIGSEGV) == "signal SIGSEGV: a crash in native code"
    assert "out-of-memory" in describe_exit(-signal.SIGKILL)


def test_running_out_of_memory_is_named_as_such() -> None:
    from gradcheck_cli.config.analyze_config import AnalyzeConfig
    from gradcheck_cli.config.specs import parse_target
    from gradcheck_cli.run.worker import failure

    config = AnalyzeConfig(target=parse_target("model.py"))
    refused = RuntimeError(
        "DefaultCPUAllocator: can't allocate memory: you tried to allocate 80000000000 bytes"
    )
    for exc in (MemoryError(), refused):
        got = failure(config, "building the inputs", exc)
        assert got.message.startswith("out of memory while building the inputs (model.py)")
        assert got.hint is not None and "--input" in got.hint
