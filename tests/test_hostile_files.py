"""Hostile cases, round two (issue 23 part B): writes through names, `gradcheck report` escaping,
FIFOs, sockets and upper bounds, checkpoint dtypes and shard paths, internal errors.

Every case asserts the exit code, the message, that no marker file appeared and that no file
outside the output changed. Everything lives in tmp_path.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

NET = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(torch.relu(self.fc(x)))


def sample_batch():
    return torch.randn(8, 4), torch.randint(0, 2, (8,))
"""
VICTIM = "print('the user code')\n"
ARGS = ("--device", "cpu", "--batches", "1")
ESC_NAME = "fc\x1b[31mRED\x1b]8;;https://evil.example/\x07link\x1b]8;;\x07"
SCRIPT_NAME = "a`</code><script>alert(1)</script>`|x"


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink() and not p.name.startswith(".")
    }


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "net.py").write_text(NET)
    (tmp_path / "victim.py").write_text(VICTIM)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    assert not list(tmp_path.rglob("MARK*")), "a marker file appeared"


def unchanged(before: dict[str, str], folder: Path, *, but: tuple[str, ...] = ()) -> None:
    after = {k: v for k, v in digest(folder).items() if k not in but}
    assert after == {k: v for k, v in before.items() if k not in but}


def refused(result: Any, *needles: str) -> None:
    assert result.exit_code == 2, result
    assert "Traceback" not in result.stderr and "unexpected" not in result.stderr, result
    for needle in needles:
        assert needle in result.stderr, (needle, result)


# -- writes through names --------------------------------------------------------------------------
def test_output_symlink_to_python_file_is_refused(cli, project: Path) -> None:
    (project / "out").mkdir()
    (project / "out" / "x.json").symlink_to(project / "victim.py")
    before = digest(project)
    refused(cli("analyze", "net.py", *ARGS, "--format", "json", "--output", "out/x.json"), "Python source")
    unchanged(before, project)
    assert (project / "victim.py").read_text() == VICTIM


def test_output_symlink_chain_to_python_file_is_refused(cli, project: Path) -> None:
    (project / "b.json").symlink_to("victim.py")
    (project / "a.json").symlink_to("b.json")
    before = digest(project)
    refused(cli("analyze", "net.py", *ARGS, "--output", "a.json"), "a link to", "victim.py")
    unchanged(before, project)


def test_output_dangling_symlink_to_new_python_file_is_refused(cli, project: Path) -> None:
    (project / "x.json").symlink_to("new_module.py")
    refused(cli("analyze", "net.py", *ARGS, "--output", "x.json"), "Python source")
    assert not (project / "new_module.py").exists()


def test_output_symlink_to_the_model_file_is_refused(cli, project: Path) -> None:
    (project / "report.json").symlink_to("net.py")
    before = digest(project)
    refused(cli("analyze", "net.py", *ARGS, "--output", "report.json"), "is the model file itself")
    unchanged(before, project)


def test_output_symlink_to_the_checkpoint_is_refused(cli, project: Path) -> None:
    torch.save(_state(project), project / "weights.pt")
    (project / "r.json").symlink_to("weights.pt")
    before = digest(project)
    result = cli("analyze", "net.py", *ARGS, "--weights", "weights.pt", "--output", "r.json")
    refused(result, "is the --weights file, which this run reads")
    unchanged(before, project)


def test_output_onto_the_config_file_is_refused(cli, project: Path) -> None:
    (project / "gradcheck.yaml").write_text("target: net.py\nbatches: 1\ndevice: cpu\n")
    before = digest(project)
    refused(cli("analyze", "--output", "gradcheck.yaml"), "is the config file, which this run reads")
    unchanged(before, project)


def test_config_reports_entry_through_a_symlink_is_refused(cli, project: Path) -> None:
    (project / "r.md").symlink_to("victim.py")
    (project / "gradcheck.yaml").write_text(
        "target: net.py\nbatches: 1\ndevice: cpu\nreports:\n  - {format: markdown, output: r.md}\n"
    )
    before = digest(project)
    refused(cli("analyze"), "Python source")
    unchanged(before, project)


@pytest.mark.parametrize("name", ["notebook.ipynb", "stub.pyi", "UPPER.PY"])
def test_output_never_replaces_other_source_files(cli, project: Path, name: str) -> None:
    (project / name).write_text("source")
    before = digest(project)
    refused(cli("analyze", "net.py", *ARGS, "--output", name), "Python source")
    unchanged(before, project)


def test_output_symlink_to_a_report_file_is_written_through(cli, project: Path) -> None:
    (project / "reports").mkdir()
    (project / "reports" / "real.json").write_text("{}")
    (project / "latest.json").symlink_to("reports/real.json")
    before = digest(project)
    result = cli("analyze", "net.py", *ARGS, "--format", "json", "--output", "latest.json")
    assert result.exit_code == 0, result
    assert json.loads((project / "reports" / "real.json").read_text())["schema"] == "gradcheck.report/1"
    unchanged(before, project, but=("reports/real.json",))


def test_output_hard_linked_to_python_file_replaces_the_link_not_the_code(cli, project: Path) -> None:
    os.link(project / "victim.py", project / "x.json")
    result = cli("analyze", "net.py", *ARGS, "--format", "json", "--output", "x.json")
    assert result.exit_code == 0, result
    assert (project / "victim.py").read_text() == VICTIM
    assert json.loads((project / "x.json").read_text())["schema"] == "gradcheck.report/1"


def test_report_output_hard_linked_to_the_model_leaves_the_model(cli, project: Path) -> None:
    run_file(project)
    os.link(project / "net.py", project / "r.md")
    result = cli("report", "run.jsonl", "--format", "markdown", "--output", "r.md", "--fail-on", "never")
    assert result.exit_code == 0, result
    assert (project / "net.py").read_text() == NET and "gradcheck report" in (project / "r.md").read_text()
    assert not [p for p in project.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("name", ["victim.py", "link.yaml"])
def test_init_never_overwrites_python_even_with_force(cli, project: Path, name: str) -> None:
    (project / "link.yaml").symlink_to("victim.py")
    before = digest(project)
    refused(cli("init", name, "--force"), "Python source")
    unchanged(before, project)


# -- gradcheck report: outputs and escaping ----------------------------------------------------------
def run_line(step: int, layer: str = "fc", message: str = "m", model: str = "Net") -> str:
    return json.dumps(
        {
            "step": step,
            "loss": 1.0 / (step + 1),
            "model": {"class": model},
            "layers": [
                {
                    "name": layer,
                    "type": "Linear",
                    "index": 0,
                    "grad_norm": 0.1 * (step + 1),
                    "weight_norm": 1.0,
                },
                {"name": "head", "type": "Linear", "index": 1, "grad_norm": 0.2, "weight_norm": 1.0},
            ],
            "activations": [{"name": layer + ".act", "family": "relu", "after": layer, "dead_fraction": 0.1}],
            "findings": [{"id": "dead-relu", "severity": "warning", "message": message, "layers": [layer]}],
        }
    )


def run_file(folder: Path, **kw: str) -> Path:
    path = folder / "run.jsonl"
    path.write_text("\n".join(run_line(step, **kw) for step in range(0, 50, 10)) + "\n")
    return path


@pytest.mark.parametrize("output", ["victim.py", "link.md"])
def test_report_output_never_overwrites_python(cli, project: Path, output: str) -> None:
    run_file(project)
    (project / "link.md").symlink_to("victim.py")
    before = digest(project)
    refused(cli("report", "run.jsonl", "--format", "markdown", "--output", output), "Python source")
    unchanged(before, project)


def test_report_output_onto_its_own_input_is_refused(cli, project: Path) -> None:
    run_file(project)
    before = digest(project)
    refused(cli("report", "run.jsonl", "--output", "run.jsonl"), "is the run file, which this run reads")
    unchanged(before, project)


def test_report_terminal_shows_escape_sequences_as_text(cli, project: Path) -> None:
    run_file(
        project,
        layer=ESC_NAME,
        message="see \x1b]8;;https://evil.example/\x07here\x1b]8;;\x07",
        model="N\x1b[2J",
    )
    before = digest(project)
    result = cli("report", "run.jsonl", "--fail-on", "never")
    assert result.exit_code == 0, result
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "\\x1b[31mRED" in result.stdout and "\\x1b]8;;https://evil.example/\\x07" in result.stdout
    unchanged(before, project)


def _outside_code_spans(markdown: str) -> str:
    """The Markdown with every code span removed (what a renderer could read as HTML)."""
    out, i = [], 0
    while i < len(markdown):
        if markdown[i] == "\\" and i + 1 < len(markdown):
            out.append(markdown[i : i + 2])
            i += 2
            continue
        run = re.match(r"`+", markdown[i:])
        if run:
            fence = run.group()
            end = markdown.find(fence, i + len(fence))
            while end != -1 and markdown[end + len(fence) : end + len(fence) + 1] == "`":
                end = markdown.find(fence, end + len(fence) + 1)
            if end != -1:
                i = end + len(fence)
                continue
            out.append(fence)
            i += len(fence)
            continue
        out.append(markdown[i])
        i += 1
    return "".join(out)


def test_report_markdown_has_no_raw_html_outside_code_spans(cli, project: Path) -> None:
    run_file(
        project,
        layer=SCRIPT_NAME,
        message="<script>alert(2)</script> [x](https://evil.example)",
        model="<b>M</b>",
    )
    result = cli("report", "run.jsonl", "--format", "markdown", "--fail-on", "never")
    assert result.exit_code == 0, result
    prose = _outside_code_spans(result.stdout)
    assert "<script" not in prose and "<b>" not in prose and "[x](" not in prose
    assert "&lt;script&gt;alert(2)" in result.stdout


def test_report_markdown_shows_escape_sequences_as_text(cli, project: Path) -> None:
    run_file(project, layer=ESC_NAME, message="\x1b[2Jcleared")
    result = cli("report", "run.jsonl", "--format", "markdown", "--fail-on", "never")
    assert result.exit_code == 0, result
    assert "\x1b" not in result.stdout and "x1b\\[2Jcleared" in result.stdout  # shown, Markdown-escaped


def test_report_markdown_table_rows_keep_their_cells(cli, project: Path) -> None:
    run_file(project, layer="a|b|c\nd")
    result = cli("report", "run.jsonl", "--format", "markdown", "--fail-on", "never")
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert rows and len({len(re.findall(r"(?<!\\)\|", row)) for row in rows[:4]}) == 1


def test_report_html_escapes_names_and_messages(cli, project: Path) -> None:
    run_file(project, layer=ESC_NAME + "<script>x</script>", message="<img src=x onerror=alert(1)>")
    result = cli("report", "run.jsonl", "--format", "html", "--fail-on", "never")
    assert result.exit_code == 0, result
    assert "<script>x" not in result.stdout and "<img" not in result.stdout and "\x1b" not in result.stdout
    assert "&lt;img src=x" in result.stdout and "\\x1b[31mRED" in result.stdout


def test_report_json_keeps_names_exactly(cli, project: Path) -> None:
    run_file(project, layer=ESC_NAME)
    result = cli("report", "run.jsonl", "--format", "json", "--fail-on", "never")
    assert result.exit_code == 0, result
    assert "\x1b" not in result.stdout  # JSON escapes it as \u001b
    assert json.loads(result.stdout)["layers"][0]["name"] == ESC_NAME


# -- non-regular files -------------------------------------------------------------------------------
def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def unix_socket(path: Path) -> Iterator[Path]:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    try:
        yield path
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("analyze", "net.py", *ARGS, "--weights", "pipe"), "--weights pipe is a FIFO"),
        (("analyze", "net.py", *ARGS, "--versus", "pipe"), "--versus pipe is a FIFO"),
        (("analyze", "net.py", *ARGS, "--baseline", "pipe"), "--baseline pipe is a FIFO"),
        (("analyze", "net.py", *ARGS, "--config", "pipe"), "config file pipe is a FIFO"),
        (("analyze", "pipe.py", *ARGS), "model file pipe.py is a FIFO"),
        (("report", "pipe"), "run file pipe is a FIFO"),
        (("compare", "pipe", "pipe"), "baseline pipe is a FIFO"),
    ],
)
def test_fifos_are_refused_before_anything_reads_them(
    cli, project: Path, args: tuple[str, ...], message: str
) -> None:
    fifo(project / "pipe")
    fifo(project / "pipe.py")
    before = digest(project)
    refused(cli(*args), message, "not a regular file")
    unchanged(before, project)


def test_default_config_that_is_a_fifo_is_refused(cli, project: Path) -> None:
    fifo(project / "gradcheck.yaml")
    refused(cli("analyze", "net.py", *ARGS), "gradcheck.yaml is a FIFO")


def test_weights_that_are_a_socket_are_refused(cli, project: Path) -> None:
    for path in unix_socket(project / "sock"):
        refused(cli("analyze", "net.py", *ARGS, "--weights", str(path)), "is a socket")


def test_symlink_to_a_fifo_is_refused(cli, project: Path) -> None:
    fifo(project / "pipe")
    (project / "run.jsonl").symlink_to("pipe")
    refused(cli("report", "run.jsonl"), "is a FIFO")


def test_shard_index_and_shard_that_are_fifos_are_refused(cli, project: Path) -> None:
    folder = project / "ckpt"
    folder.mkdir()
    fifo(folder / "model.safetensors.index.json")
    refused(cli("analyze", "net.py", *ARGS, "--weights", "ckpt"), "model.safetensors.index.json is a FIFO")
    (folder / "model.safetensors.index.json").unlink()
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"fc.weight": "s1.safetensors"}})
    )
    fifo(folder / "s1.safetensors")
    refused(cli("analyze", "net.py", *ARGS, "--weights", "ckpt"), "shard", "is a FIFO")


# -- documented upper bounds, checked before the work ----------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--batches", "1000000000"), "--batches must be an integer from 1 to 1000"),
        (("--steps", "1000000000"), "--steps must be an integer from 0 to 10000"),
        (("--batch-size", "1000000000"), "--batch-size must be an integer from 1 to 1048576"),
        (("--input", "100000x100000x1000"), "the upper bound is 4294967296 (2^32) elements"),
        (("--labels", "int:100000x100000x1000:10"), "--labels"),
        (("--batches", "0"), "--batches must be an integer from 1 to 1000"),
    ],
)
def test_bounds_are_checked_before_any_work(cli, project: Path, args: tuple[str, ...], message: str) -> None:
    before = digest(project)
    refused(cli("analyze", "net.py", "--device", "cpu", *args), message)
    unchanged(before, project)


def test_bounds_hold_in_the_config_file_too(cli, project: Path) -> None:
    (project / "gradcheck.yaml").write_text("target: net.py\nsteps: 1000000000\n")
    refused(cli("analyze"), "--steps must be an integer from 0 to 10000")


# -- checkpoints ----------------------------------------------------------------------------------------
def _state(project: Path) -> dict[str, torch.Tensor]:
    namespace: dict[str, Any] = {}
    exec(compile(NET, str(project / "net.py"), "exec"), namespace)
    torch.manual_seed(0)
    return dict(namespace["Net"]().state_dict())


@pytest.mark.parametrize(
    ("dtype", "shown"), [(torch.int64, "checkpoint int64, model float32"), (torch.complex64, "complex64")]
)
@pytest.mark.parametrize("partial", [(), ("--weights-partial",)])
def test_integer_or_complex_tensors_never_load_into_float_parameters(
    cli, project: Path, dtype: torch.dtype, shown: str, partial: tuple[str, ...]
) -> None:
    torch.save({k: (v * 100).to(dtype) for k, v in _state(project).items()}, project / "w.pt")
    before = digest(project)
    result = cli("analyze", "net.py", *ARGS, "--weights", "w.pt", "--format", "json", *partial)
    refused(result, "of another kind than the model's", shown)
    assert result.stdout == ""
    unchanged(before, project)


def test_float64_weights_still_load_into_float32(cli, project: Path) -> None:
    torch.save({k: v.double() for k, v in _state(project).items()}, project / "w.pt")
    result = cli("analyze", "net.py", *ARGS, "--weights", "w.pt", "--format", "json")
    assert result.exit_code in (0, 1), result
    assert json.loads(result.stdout)["checkpoint"]["loaded"] == 4


def test_sparse_checkpoint_tensors_load_as_their_dense_values(cli, project: Path) -> None:
    state = _state(project)
    torch.save({k: v.to_sparse() for k, v in state.items()}, project / "w.pt")
    result = cli("analyze", "net.py", *ARGS, "--weights", "w.pt", "--format", "json")
    assert result.exit_code in (0, 1), result
    doc = json.loads(result.stdout)
    assert doc["checkpoint"]["loaded"] == 4
    fc = next(layer for layer in doc["layers"] if layer["name"] == "fc")
    norm = torch.cat([state["fc.weight"].flatten(), state["fc.bias"]]).norm()
    assert fc["weight_norm"] == pytest.approx(float(norm), rel=1e-5)


def _sharded(project: Path, names: dict[str, str]) -> Path:
    from safetensors.torch import save_file

    folder = project / "deep" / "ckpt"
    folder.mkdir(parents=True)
    state = _state(project)
    save_file(state, str(project / "outside.safetensors"))
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {k: names.get(k, "outside.safetensors") for k in state}})
    )
    return folder


@pytest.mark.parametrize("shard", ["../../outside.safetensors", "ABSOLUTE", "link.safetensors"])
def test_shard_names_must_stay_inside_the_checkpoint_folder(cli, project: Path, shard: str) -> None:
    name = str(project / "outside.safetensors") if shard == "ABSOLUTE" else shard
    folder = _sharded(project, dict.fromkeys(_state(project), name))
    (folder / "link.safetensors").symlink_to(project / "outside.safetensors")
    before = digest(project)
    result = cli("analyze", "net.py", *ARGS, "--weights", str(folder))
    refused(result, "points outside the checkpoint folder")
    unchanged(before, project)


@pytest.mark.parametrize(("key", "value"), [("step", float("inf")), ("global_step", float("nan"))])
def test_non_finite_step_count_is_exit_2(cli, project: Path, key: str, value: float) -> None:
    torch.save({"state_dict": _state(project), key: value, "epoch": 1}, project / "w.pt")
    refused(
        cli("analyze", "net.py", *ARGS, "--weights", "w.pt"), f"the checkpoint's {key!r} is", "not a count"
    )


def test_optimizer_state_without_weight_decay_starts_fresh_under_steps(cli, project: Path) -> None:
    state = _state(project)
    params = [torch.nn.Parameter(v.clone()) for v in state.values()]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    saved = optimizer.state_dict()
    for group in saved["param_groups"]:
        del group["weight_decay"]
    checkpoint = {
        "state_dict": state,
        "optimizer_states": [saved],
        "pytorch-lightning_version": "2.4",
        "global_step": 7,
    }
    torch.save(checkpoint, project / "w.pt")
    result = cli("analyze", "net.py", *ARGS, "--weights", "w.pt", "--steps", "2", "--format", "json")
    assert result.exit_code in (0, 1), result
    training = json.loads(result.stdout)["training"]
    assert (
        "lack 'weight_decay'" in training["optimizer_state"]
        and "started fresh" in training["optimizer_state"]
    )


SPARSE = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 8, sparse=True)
            self.head = nn.Linear(8, 2)

        def forward(self, x):
            return self.head(self.emb(x).mean(1))

    def sample_batch():
        return torch.randint(0, 10, (4, 3)), torch.randint(0, 2, (4,))
    """
)


def test_sparse_gradients_are_measured(cli, project: Path) -> None:
    (project / "emb.py").write_text(SPARSE)
    result = cli("analyze", "emb.py", *ARGS, "--format", "json")
    assert result.exit_code in (0, 1), result
    emb = next(layer for layer in json.loads(result.stdout)["layers"] if layer["name"] == "emb")
    assert emb["grad_norm"] > 0


def test_sparse_gradients_under_steps_are_a_clear_exit_2(cli, project: Path) -> None:
    (project / "emb.py").write_text(SPARSE)
    before = digest(project)
    refused(cli("analyze", "emb.py", *ARGS, "--steps", "2"), "emb has sparse gradients", "sparse=False")
    unchanged(before, project)
