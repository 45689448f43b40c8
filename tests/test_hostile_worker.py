"""Hostile model files against the worker channel and the measurement itself, run as a user runs
gradcheck (a fresh `gradcheck` process, the supervised path):

- messages to the supervisor are JSON read against the records' types, never unpickled: a pickle,
  garbage, a wrong type or an out-of-order message from the model's code is exit 2 and runs nothing;
- the worker checks that the model's code replaced none of gradcheck's rules, pipeline functions or
  torch's hook entry points (exit 2 naming what changed), and a report where nothing was measured
  never passes.

- nothing the model's code starts outlives the run (a child in the worker's group, a `setsid`
  grandchild, a double-forked daemon; normal runs and --timeout), and a signal the model sends to
  the CLI (SIGUSR1, SIGHUP, ...) ends it with exit 2 naming the signal.

Each case asserts the exit code, the `error:` line, that no marker file appears and that no file in
the folder changed. The codec itself is checked in-process against real reports.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import struct
import sys
import time
from pathlib import Path

import pytest
from test_hostile_process import assert_could_not_run, digest, gradcheck, model_file

from gradcheck_cli.records import wire
from gradcheck_cli.records.outcome import TargetFailure
from gradcheck_cli.records.wire import WireError

# The model's code finds the message pipe as a hostile user would: the worker's command line.
FIND_PIPE = """
import os, struct
FD = int(open('/proc/self/cmdline', 'rb').read().split(b'\\0')[-2])
def send(data):
    os.write(FD, struct.pack('>I', len(data)) + data)
"""
PICKLE = """
import pickle
class Payload:
    def __reduce__(self):
        return (os.system, ('touch MARK',))
send(pickle.dumps(("report", 0, Payload())))
"""
# A complete, well-formed healthy report built with gradcheck's own records.
HEALTHY = """
from gradcheck_cli.records.report import Report, LayerRow, Summary
from gradcheck_cli.records.stats import LayerStats, ModelInfo, RunInfo
from gradcheck_cli.records.findings import LayerStatus
from gradcheck_cli.records import wire
stats = LayerStats(name='fc', type='Linear', index=0, parameters=15, trainable=True, grad_norm=1.0,
                   weight_norm=1.0, grad_weight_ratio=1.0, act_grad_rms=1.0, act_grad_norm=1.0,
                   zero_grad_fraction=0.0, nonfinite=0, measured={measured})
report = Report(target='model.py', model=ModelInfo(class_name='Net', parameters=15, trainable=15,
                device='cpu', dtype='float32'), run=RunInfo(batches=1, steps=0, seed=0, loss='mean'),
                layers=(LayerRow(stats=stats, status=LayerStatus.OK),), findings=(),
                summary=Summary(status='{status}', errors={errors}, warnings=0, infos=0))
send(wire.encode(wire.as_fields(('report', 0, report))))
"""
FORGERIES = {
    "a pickle": (PICKLE, "does not accept", "not a JSON message"),
    "garbage bytes": ("send(b'\\x80\\x04garbage')", "does not accept", "not a JSON message"),
    "a huge length": ("os.write(FD, b'\\xff\\xff\\xff\\xff')", "does not accept", "bytes (at most"),
    "an unknown kind": ('send(b\'{"kind": "exec", "code": "touch MARK"}\')', "does not accept", "kind"),
    "a wrong field type": (
        'send(b\'{"kind": "report", "index": 0, "report": {"target": 5}}\')',
        "does not accept",
        "report",
    ),
    "a report for another target": (
        'send(b\'{"kind": "stage", "index": 7, "text": "x"}\')',
        "does not accept",
        "for target 7",
    ),  # fmt: skip
    "done before the report": ('send(b\'{"kind": "done"}\')', "does not accept", "'done' before target 0"),
    "a summary its findings contradict": (
        HEALTHY.format(measured=True, status="error", errors=0),
        "does not accept",
        "contradicts itself",
    ),
    "a healthy report, then the real one": (
        HEALTHY.format(measured=True, status="healthy", errors=0) + 'send(b\'{"kind": "done"}\')',
        "does not accept",
        "after 'done'",
    ),
}


# End to end (a fresh `gradcheck` each, ~4 s of CPU): the pickle and the forged healthy report by
# default, every case under `-m slow`; every case also runs in-process below, through the supervisor's
# own reader, which is what decides.
END_TO_END = ("a pickle", "a healthy report, then the real one")


@pytest.mark.parametrize(
    "case", [c if c in END_TO_END else pytest.param(c, marks=pytest.mark.slow) for c in sorted(FORGERIES)]
)
def test_forged_messages_are_exit_2_and_run_nothing(tmp_path: Path, case: str) -> None:
    code, *words = FORGERIES[case]
    model_file(tmp_path, top=(FIND_PIPE + code).replace("MARK", str(tmp_path / "MARK")))
    before = digest(tmp_path)
    done = gradcheck("analyze", "model.py", "--format", "json", cwd=tmp_path)
    assert_could_not_run(done, *words)
    assert not (tmp_path / "MARK").exists()
    assert digest(tmp_path) == before


class _Target:
    def __init__(self, raw: str) -> None:
        self.target = type("Ref", (), {"raw": raw})()


class _Quiet:
    def stage(self, index: int, text: str) -> None:
        pass

    def tick(self) -> None:
        pass


@pytest.mark.parametrize("case", sorted(FORGERIES))
def test_forged_messages_are_refused_by_the_supervisors_reader(tmp_path: Path, case: str) -> None:
    """The bytes each forgery writes, read by the supervisor's own `_dispatch` and `Collector`: a
    WireError naming the problem (the end-to-end run turns it into exit 2), nothing unpickled."""
    from gradcheck_cli.run.supervisor import Collector, _dispatch

    code, _, words = FORGERIES[case]
    read, write = os.pipe()
    namespace = {"os": os, "struct": struct, "FD": write}
    namespace["send"] = lambda data: os.write(write, struct.pack(">I", len(data)) + data)
    exec(code.replace("MARK", str(tmp_path / "MARK")), namespace)
    namespace["send"](wire.encode(wire.as_fields(("stage", 0, "measuring"))))  # the real worker goes on
    os.close(write)
    buffer = bytearray()
    while chunk := os.read(read, 1 << 16):
        buffer.extend(chunk)
    os.close(read)
    collector = Collector([_Target("model.py")], _Quiet())  # type: ignore[list-item]
    with pytest.raises(WireError, match=re.escape(words)):
        _dispatch(buffer, collector)
    assert not (tmp_path / "MARK").exists()


def test_a_forged_report_in_which_nothing_was_measured_never_passes(tmp_path: Path) -> None:
    code = HEALTHY.format(measured=False, status="healthy", errors=0) + 'send(b\'{"kind": "done"}\')\n'
    model_file(tmp_path, top=FIND_PIPE + code + "os._exit(0)\n")
    before = digest(tmp_path)
    done = gradcheck("analyze", "model.py", "--format", "json", cwd=tmp_path)
    assert_could_not_run(done, "no layer's gradient was measured")
    assert digest(tmp_path) == before


# --- the model's code replaces what gradcheck measures with ----------------------------------------

TAMPERING = {
    "register_hook made a no-op": (
        "import torch\ntorch.Tensor.register_hook = lambda self, hook: None\n",
        "",
        "torch.Tensor.register_hook",
    ),
    "register_hook wrapped to feed fake gradients": (
        "import torch\n_real = torch.Tensor.register_hook\n"
        "def fake(self, hook):\n    return _real(self, lambda g: hook(g * 0 + 1))\n"
        "torch.Tensor.register_hook = fake\n",
        "",
        "torch.Tensor.register_hook",
    ),
    "register_forward_hook replaced": (
        "from torch import nn\n_real = nn.Module.register_forward_hook\n"
        "nn.Module.register_forward_hook = lambda self, *a, **k: _real(self, *a, **k)\n",
        "",
        "torch.nn.Module.register_forward_hook",
    ),
    "the rule registry emptied": (
        "from gradcheck_cli.judge.rules import base\nbase.registry().clear()\n",
        "",
        "the rule registry",
    ),
    "one rule's check replaced": (
        "import dataclasses\nfrom gradcheck_cli.judge.rules import base\n"
        "base.registry()['vanishing-gradients'] = dataclasses.replace("
        "base.registry()['vanishing-gradients'], check=lambda *a, **k: [])\n",
        "",
        "the rule vanishing-gradients",
    ),
    "the pipeline's diagnose replaced": (
        "import gradcheck_cli.run.pipeline as p\n_real = p.diagnose\np.diagnose = lambda *a, **k: _real(*a, **k)\n",
        "",
        "gradcheck_cli.run.pipeline.diagnose",
    ),
    "a global hook added during the measurement": (
        "",
        "torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: None); return self.fc(x)",
        "global module hooks",
    ),
    "register_hook replaced during the measurement": (
        "",
        "torch.Tensor.register_hook = lambda self, hook: None; return self.fc(x)",
        "torch.Tensor.register_hook",
    ),
}


TAMPERING_END_TO_END = ("register_hook made a no-op", "register_hook replaced during the measurement")


@pytest.mark.parametrize(
    "case",
    [c if c in TAMPERING_END_TO_END else pytest.param(c, marks=pytest.mark.slow) for c in sorted(TAMPERING)],
)
def test_replacing_what_gradcheck_measures_with_is_exit_2_naming_it(tmp_path: Path, case: str) -> None:
    """End to end: one case after the import and one during the measurement by default (each a
    fresh `gradcheck`), every case under `-m slow`; the check itself runs for every case below."""
    top, body, changed = TAMPERING[case]
    model_file(tmp_path, body or "return self.fc(x)", top=top)
    before = digest(tmp_path)
    done = gradcheck("analyze", "model.py", "--format", "json", cwd=tmp_path)
    assert_could_not_run(done, "were replaced", changed)
    assert digest(tmp_path) == before


@contextlib.contextmanager
def _restored_afterwards():
    """A Snapshot of this process, and everything in it put back afterwards."""
    from torch.nn.modules import module as torch_module

    import gradcheck_cli.run.pipeline  # noqa: F401  # loaded before the snapshot, as in the worker
    from gradcheck_cli.judge.rules import base
    from gradcheck_cli.run.integrity import _GLOBAL_HOOKS, Snapshot

    registry = dict(base.registry())
    hooks = {attr: dict(getattr(torch_module, attr)) for attr in _GLOBAL_HOOKS}
    snapshot = Snapshot.take()
    try:
        yield snapshot
    finally:
        for entry in snapshot.entries:
            if entry.changed() and isinstance(entry.owner, dict):
                entry.owner[entry.attr] = entry.obj
            elif entry.changed():
                setattr(entry.owner, entry.attr, entry.obj)
        base.registry().clear()
        base.registry().update(registry)
        for attr, saved in hooks.items():
            getattr(torch_module, attr).clear()
            getattr(torch_module, attr).update(saved)
    assert not [entry.label for entry in snapshot.entries if entry.changed()]


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_the_self_check_names_every_replacement(case: str) -> None:
    """The worker's check (`integrity.Snapshot`) against each tampering, run in this process and
    undone afterwards: TamperedError naming what changed."""
    import torch

    from gradcheck_cli.run.integrity import TamperedError

    top, body, changed = TAMPERING[case]
    code = top or body.rpartition("; return")[0]
    with _restored_afterwards() as snapshot:
        snapshot.check("before")  # nothing changed yet
        exec(code, {"torch": torch})
        with pytest.raises(TamperedError, match=re.escape(changed)) as tampered:
            snapshot.check("after the model's code ran")
    assert "were replaced after the model's code ran" in str(tampered.value)


def test_layers_run_outside_forward_measure_nothing_and_never_pass(tmp_path: Path) -> None:
    """Every parameter used through its weight alone: no hook fires, so nothing is measured."""
    model_file(tmp_path, "return torch.nn.functional.linear(x, self.fc.weight, self.fc.bias)")
    before = digest(tmp_path)
    done = gradcheck("analyze", "model.py", "--format", "json", cwd=tmp_path)
    assert_could_not_run(done, "no layer's gradient was measured")
    assert digest(tmp_path) == before


# --- the codec, in-process -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report():
    from dataclasses import fields

    import torch
    from torch import nn

    import gradcheck_cli
    from gradcheck_cli.records.report import Report

    torch.manual_seed(0)
    model = nn.Sequential(*[m for _ in range(6) for m in (nn.Linear(8, 8), nn.Sigmoid())], nn.Linear(8, 2))
    api_report = gradcheck_cli.analyze(model, inputs=torch.randn(8, 8), batches=1)
    return Report(**{f.name: getattr(api_report, f.name) for f in fields(Report)})  # what a worker sends


def test_reports_cross_as_json_exactly(report) -> None:
    data = wire.encode(wire.as_fields(("report", 3, report)))
    json.loads(data)  # plain JSON, nothing else
    kind, index, back = wire.decode(data)
    assert (kind, index) == ("report", 3)
    assert repr(back) == repr(report)  # NaN-safe equality: every field, every nested record
    assert report.findings  # the case has findings with evidence to carry


def test_failures_and_stages_cross_as_json() -> None:
    failure = TargetFailure(target="m.py", stage="loading m.py", message="x", hint=None, details="tb")
    assert wire.decode(wire.encode(wire.as_fields(("failure", 0, failure)))) == ("failure", 0, failure)
    assert wire.decode(wire.encode(wire.as_fields(("stage", 1, "diagnosing")))) == ("stage", 1, "diagnosing")
    assert wire.decode(wire.encode(wire.as_fields(("done",)))) == ("done",)


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda d: d["report"]["summary"].update(errors="0"), "str where int belongs"),
        (lambda d: d["report"]["layers"][0]["stats"].update(evil=1), "unknown ['evil']"),
        (lambda d: d["report"]["findings"][0].update(severity="fatal"), "'fatal' is not a Severity"),
        (lambda d: d["report"].update(findings={"a": 1}), "dict where a list belongs"),
        (lambda d: d.update(extra=1), "expected ['index', 'report']"),
        (lambda d: d["report"]["layers"][0]["stats"].update(trainable=1), "int where bool belongs"),
    ],
)
def test_malformed_reports_are_refused_naming_the_field(report, mutate, words: str) -> None:
    fields = json.loads(wire.encode(wire.as_fields(("report", 0, report))))
    mutate(fields)
    with pytest.raises(WireError, match=words.replace("[", r"\[").replace("(", r"\(")):
        wire.decode(json.dumps(fields).encode())


def test_deeply_nested_json_is_a_wire_error() -> None:
    with pytest.raises(WireError):
        wire.decode(b'{"kind": "stage", "index": ' + b"[" * 100000 + b"]" * 100000 + b', "text": ""}')
    with pytest.raises(WireError):
        wire.decode(struct.pack(">I", 3))


# --- nothing left running, and no death by signal --------------------------------------------------

LEFT_RUNNING = {
    "a child in the worker's group": "subprocess.Popen(['sleep', '600'])",
    "a setsid grandchild": "subprocess.Popen(['sleep', '600'], start_new_session=True)",
    "a double-forked daemon": "subprocess.Popen(['sh', '-c', 'setsid sleep 600 &'])",
}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _sleepers(since: set[int]) -> set[int]:
    """`sleep 600` processes started after `since` was taken (ours: nobody else sleeps 600 s)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in since:
            with contextlib.suppress(OSError):
                if Path(f"/proc/{entry}/cmdline").read_bytes() == b"sleep\x00600\x00" and _alive(int(entry)):
                    found.add(int(entry))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the subreaper and /proc are Linux's")
@pytest.mark.parametrize("timeout", [False, True], ids=["normal run", "--timeout"])
def test_nothing_the_model_starts_outlives_the_run(tmp_path: Path, timeout: bool) -> None:
    """One run starts all three (a child in the worker's group, a `setsid` grandchild, a
    double-forked daemon): none is left once the run ends, normally or by --timeout."""
    top = "import subprocess\n" + "".join(f"{start}\n" for start in LEFT_RUNNING.values())
    model_file(tmp_path, "import time; time.sleep(600)" if timeout else "return self.fc(x)", top=top)
    before, earlier = digest(tmp_path), _sleepers(set())
    args = ("--timeout", "3") if timeout else ("--fail-on", "never")
    done = gradcheck("analyze", "model.py", "--format", "json", *args, cwd=tmp_path)
    if timeout:
        assert_could_not_run(done, "timed out after 3 s")
    else:
        assert done.returncode == 0, done
        json.loads(done.stdout)
    deadline = time.monotonic() + 5
    while _sleepers(earlier) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _sleepers(earlier), f"left running: {_sleepers(earlier)}"
    assert digest(tmp_path) == before


@pytest.mark.parametrize(
    "name",
    [
        "SIGUSR1",
        "SIGHUP",
        pytest.param("SIGUSR2", marks=pytest.mark.slow),
        pytest.param("SIGALRM", marks=pytest.mark.slow),
    ],
)  # every one is in the same handler: test_every_ending_signal_is_caught_and_faults_are_not
def test_a_signal_from_the_model_is_exit_2_naming_it(tmp_path: Path, name: str) -> None:
    model_file(tmp_path, f"import os, signal, time; os.kill(os.getppid(), signal.{name}); time.sleep(60)")
    before = digest(tmp_path)
    done = gradcheck("analyze", "model.py", "--format", "json", cwd=tmp_path)
    assert_could_not_run(done, f"stopped ({name}) while", "(model.py)")
    assert digest(tmp_path) == before


def test_every_ending_signal_is_caught_and_faults_are_not() -> None:
    from gradcheck_cli.run.reaper import ending_signals

    caught = set(ending_signals())
    assert {signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM} <= caught
    assert not caught & {signal.SIGINT, signal.SIGKILL, signal.SIGSTOP, signal.SIGSEGV, signal.SIGCHLD}
