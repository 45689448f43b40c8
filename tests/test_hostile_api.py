"""Hostile cases for the Python API and the process edges (issue 23 part B): analyze() inside
no_grad/inference_mode, arguments out of range, threads, the meta device; a closed or broken
stdout for the CLI (a real process: CliRunner has no file descriptors to close).

Each case asserts the exception or exit code, its message, and that the model (or the folder)
is left as it was.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import gradcheck_cli
from gradcheck_cli.records.errors import DeviceError

GRADCHECK = Path(sys.executable).with_name("gradcheck")


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(8, 4, generator=generator), torch.randint(0, 2, (8,), generator=generator)


def grads_of(report: Any) -> list[float]:
    return [row.stats.grad_norm for row in report.layers]


def state_of(model: nn.Module) -> dict[str, Any]:
    return {
        name: (p.detach().clone(), None if p.grad is None else p.grad.clone(), p.requires_grad)
        for name, p in model.named_parameters()
    }


def same_state(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def eq(x: Any, y: Any) -> bool:
        return (x is None and y is None) or (x is not None and y is not None and torch.equal(x, y))

    return a.keys() == b.keys() and all(
        eq(a[k][0], b[k][0]) and eq(a[k][1], b[k][1]) and a[k][2] == b[k][2] for k in a
    )


# -- grad modes --------------------------------------------------------------------------------------
def test_analyze_inside_no_grad_measures_and_says_so() -> None:
    model, data = tiny(), batch()
    expected = grads_of(gradcheck_cli.analyze(model, inputs=data, device="cpu", batches=1))
    with torch.no_grad():
        report = gradcheck_cli.analyze(model, inputs=data, device="cpu", batches=1)
        assert not torch.is_grad_enabled()  # the caller's mode is back
    assert grads_of(report) == pytest.approx(expected, rel=1e-6)
    assert all(g > 0 for g in grads_of(report))
    assert any("torch.no_grad()" in note and "enabled gradients" in note for note in report.notes)


def test_analyze_inside_inference_mode_with_inference_tensors(caplog: pytest.LogCaptureFixture) -> None:
    model = tiny()
    expected = grads_of(gradcheck_cli.analyze(model, inputs=batch(), device="cpu", batches=1))
    with torch.inference_mode():
        data = batch()  # inference tensors
        with caplog.at_level("INFO", logger="gradcheck_cli"):
            report = gradcheck_cli.analyze(model, inputs=data, device="cpu", batches=1)
        assert torch.is_inference_mode_enabled()
    assert grads_of(report) == pytest.approx(expected, rel=1e-6)
    assert any("torch.inference_mode()" in note for note in report.notes)
    assert "torch.inference_mode()" in caplog.text


def test_analyze_with_gradients_on_adds_no_note() -> None:
    report = gradcheck_cli.analyze(tiny(), inputs=batch(), device="cpu", batches=1)
    assert report.notes == ()


def test_model_built_inside_inference_mode_is_a_clear_error() -> None:
    with torch.inference_mode():
        model = tiny()
    with pytest.raises(DeviceError, match="built inside torch.inference_mode"):
        gradcheck_cli.analyze(model, inputs=batch(), device="cpu", batches=1)


# -- arguments ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batches": 0}, r"analyze\(batches=0\): batches must be an integer from 1 to 1000"),
        ({"batches": True}, r"batches=True"),
        ({"batches": 2.5}, r"batches=2.5"),
        ({"batches": 10**9}, r"from 1 to 1000"),
        ({"steps": -1}, r"analyze\(steps=-1\): steps must be an integer from 0 to 10000"),
        ({"steps": 10**9}, r"steps=1000000000"),
        ({"seed": -5}, r"analyze\(seed=-5\)"),
    ],
)
def test_arguments_out_of_range_are_value_errors_naming_the_argument(
    kwargs: dict[str, Any], message: str
) -> None:
    model = tiny()
    before = state_of(model)
    with pytest.raises(ValueError, match=message):
        gradcheck_cli.analyze(model, inputs=batch(), device="cpu", **kwargs)
    assert same_state(before, state_of(model))


def test_meta_device_error_speaks_of_the_api_not_the_cli_flag() -> None:
    model = tiny().to("meta")
    with pytest.raises(DeviceError) as caught:
        gradcheck_cli.analyze(model, inputs="8x4")
    text = f"{caught.value.message} {caught.value.hint}"
    assert "meta device" in text and "to_empty" in text and "--device" not in text


def test_unknown_device_names_the_argument_not_the_flag() -> None:
    with pytest.raises(DeviceError) as caught:
        gradcheck_cli.analyze(tiny(), inputs=batch(), device="tpu")
    assert "analyze(): unknown device 'tpu'" in caught.value.message
    assert "--device" not in caught.value.message


# -- threads -------------------------------------------------------------------------------------------
def test_four_threads_analysing_one_model_run_one_at_a_time() -> None:
    model, data = tiny(), batch()
    model(data[0]).sum().backward()  # the user's own .grad, which every analysis must leave alone
    before = state_of(model)
    expected = grads_of(gradcheck_cli.analyze(model, inputs=data, device="cpu", batches=2))
    results: list[Any] = []
    inside, most = [0], [0]
    lock = threading.Lock()

    def loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        try:
            return nn.functional.cross_entropy(output, target)
        finally:
            with lock:
                inside[0] -= 1

    def work() -> None:
        try:
            results.append(
                gradcheck_cli.analyze(model, inputs=data, loss_fn=loss_fn, device="cpu", batches=2)
            )
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == 4 and not [r for r in results if isinstance(r, BaseException)], results
    for report in results:
        assert grads_of(report) == pytest.approx(expected, rel=1e-6)
    assert most[0] == 1, "two analyses ran their passes at the same time"
    assert same_state(before, state_of(model))


def test_analyze_from_inside_an_analysis_is_refused() -> None:
    class Reentrant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            gradcheck_cli.analyze(nn.Linear(4, 2), inputs=x.detach(), device="cpu", batches=1)
            return self.fc(x)

    with pytest.raises(Exception) as caught:
        gradcheck_cli.analyze(Reentrant(), inputs=batch(), device="cpu", batches=1)
    assert "inside another analyze()" in str(caught.value) + str(caught.value.__cause__) + str(
        getattr(caught.value, "hint", "")
    ) + str(caught.value.__context__)


# -- a closed or broken stdout (real processes) ---------------------------------------------------------
def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


def gradcheck(
    cwd: Path, *args: str, stdout: Any = None, close_stdout: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "GRADCHECK_IN_PROCESS"}
    script = f'exec "{GRADCHECK}" "$@" >&-' if close_stdout else f'exec "{GRADCHECK}" "$@"'
    return subprocess.run(
        ["sh", "-c", script, "sh", *args],
        cwd=cwd,
        env=env,
        stdout=stdout if stdout is not None else subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=180,
    )


MODEL = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)

def sample_batch():
    return torch.randn(8, 4), torch.randint(0, 2, (8,))
"""


def test_closed_stdout_is_exit_2_with_a_message_and_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(MODEL)
    before = digest(tmp_path)
    result = gradcheck(
        tmp_path,
        "analyze",
        "m.py",
        "--device",
        "cpu",
        "--batches",
        "1",
        "--format",
        "json",
        close_stdout=True,
    )
    assert result.returncode == 2, result.stderr
    assert "error: stdout is closed" in result.stderr and "--output" in result.stderr
    assert "Traceback" not in result.stderr and "unexpected" not in result.stderr
    assert digest(tmp_path) == before


def test_closed_stdout_with_output_file_runs_normally(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(MODEL)
    result = gradcheck(
        tmp_path,
        "analyze",
        "m.py",
        "--device",
        "cpu",
        "--batches",
        "1",
        "--format",
        "json",
        "--output",
        "r.json",
        close_stdout=True,
    )
    assert result.returncode in (0, 1), result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "r.json").read_text().startswith("{")
    assert set(digest(tmp_path)) == {"m.py", "r.json"}


def test_closed_stdout_for_a_torch_free_command_is_exit_2(tmp_path: Path) -> None:
    result = gradcheck(tmp_path, "zoo", close_stdout=True)
    assert result.returncode == 2 and "error: stdout is closed" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_reader_closing_the_pipe_is_exit_2_without_a_traceback(tmp_path: Path) -> None:
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first write: EPIPE
    try:
        result = gradcheck(tmp_path, "zoo", "--options", stdout=write)
    finally:
        os.close(write)
    assert result.returncode == 2, result.stderr
    assert "closed the pipe" in result.stderr and "Traceback" not in result.stderr
    assert "Exception ignored" not in result.stderr


@pytest.mark.parametrize("name", ["train.py", "link.jsonl"])
def test_monitor_never_appends_to_python_source(tmp_path: Path, name: str) -> None:
    from gradcheck_cli import GradientMonitor

    (tmp_path / "train.py").write_text("print('training')\n")
    (tmp_path / "link.jsonl").symlink_to("train.py")
    before = digest(tmp_path)
    with pytest.raises(ValueError, match="Python source"):
        GradientMonitor(tiny(), jsonl=tmp_path / name)
    assert digest(tmp_path) == before
