"""Run the analysis in a worker process, so that the user's code cannot decide gradcheck's exit code.

The CLI process stays torch-free: it starts `gradcheck_cli.run.worker`, hands it the checked configs
through a pipe and reads back, through another pipe the user's code does not know about, the
worker's stage, then each target's Report or TargetFailure. Whatever happens in the worker, every
target ends with one of the two:

- the worker exits, crashes (SIGSEGV), is killed (the OOM killer's SIGKILL) or calls os._exit
  before the target's report arrived: a TargetFailure naming the exit code or signal and the stage;
- --timeout passes: the worker's process group is killed, a TargetFailure names the stage;
- Ctrl-C, SIGTERM or any other catchable signal that would end the CLI (SIGHUP, SIGUSR1, ...): the
  same, "interrupted (Ctrl-C)" / "stopped (SIGUSR1)", and the remaining targets are not started;
- in every case, the worker's process group and every process the run started end with it (`reaper`).

A target after one whose worker died gets a fresh worker. The worker's stdout and stderr are this
process's stderr: stdout carries the report and nothing else.
GRADCHECK_IN_PROCESS=1 runs the job in this process instead (tests that are not about isolation).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Sequence
from typing import Any, Protocol

from gradcheck_cli.config.analyze_config import AnalyzeConfig
from gradcheck_cli.records.outcome import TargetFailure
from gradcheck_cli.records.report import Report
from gradcheck_cli.records.scaling import ScaleReport
from gradcheck_cli.records.wire import MAX_MESSAGE_BYTES, WireError, decode, inconsistent, nothing_measured
from gradcheck_cli.run.reaper import Stopped, signals_raise
from gradcheck_cli.run.spawn import kill, worker_process
from gradcheck_cli.run.worker import HEADER, Job

Outcome = Report | ScaleReport | TargetFailure
IN_PROCESS_ENV = "GRADCHECK_IN_PROCESS"
_TICK = 0.25
EXIT_GRACE_SECONDS = 10.0
"""After its last report, how long the worker may take to exit (atexit handlers) before it is stopped."""
STARTUP_SECONDS = 120.0
"""With --timeout, how long a worker may take to start (import torch) before its first target
starts: the target's own clock starts with its first stage."""


class Progress(Protocol):
    def stage(self, index: int, text: str) -> None: ...
    def tick(self) -> None: ...


class Collector:
    """Reads the worker's messages: the current target and stage, and every outcome so far."""

    def __init__(self, configs: Sequence[AnalyzeConfig], progress: Progress) -> None:
        self.configs, self.progress = configs, progress
        self.outcomes: dict[int, Outcome] = {}
        self.stage, self.done = "starting", False
        self.stage_index: int | None = None
        self.since = time.monotonic()
        """When the current target started (for --timeout)."""

    def handle(self, message: tuple[Any, ...]) -> None:
        """One message, in the order the protocol allows (WireError otherwise): stages and then the
        outcome of the first target without one, each in turn, then "done" and nothing after it."""
        kind = message[0]
        if self.done:
            raise WireError(f"a {kind!r} message after 'done'")
        expected = self.pending()
        if kind == "done":
            if expected is not None:
                raise WireError(f"'done' before target {expected} had its report")
            self.done = True
            return
        index = message[1]
        if index != expected:
            raise WireError(f"a {kind!r} message for target {index} while target {expected} runs")
        if kind == "stage":
            if index != self.stage_index:
                self.since = time.monotonic()
            self.stage_index, self.stage = index, message[2]
            self.progress.stage(index, message[2])
            return
        self.outcomes[index] = self._checked(index, message[2])
        self.stage, self.stage_index, self.since = "starting", None, time.monotonic()

    def _checked(self, index: int, outcome: Outcome) -> Outcome:
        """A report that cannot be what its own findings say is refused; one that measured nothing
        never passes."""
        if isinstance(outcome, TargetFailure):
            return outcome
        problem = inconsistent(outcome)
        if problem is not None:
            raise WireError(f"a report for target {index} that contradicts itself: {problem}")
        if nothing_measured(outcome):
            return TargetFailure(
                target=outcome.target,
                stage="judging",
                message="no layer's gradient was measured, so the report says nothing about gradient flow",
                hint="does the model's code replace torch's hooks or run its layers outside forward()?",
            )
        return outcome

    def refuse_all(self, start: int, problem: str) -> None:
        """A broken conversation: no outcome of this worker's targets can be believed."""
        for index in range(start, len(self.configs)):
            self.outcomes[index] = TargetFailure(
                target=self.configs[index].target.raw,
                stage=self.stage,
                message=f"the analysis process sent a message gradcheck does not accept: {problem}",
                hint="something in the model's code wrote to gradcheck's message pipe, or ended the "
                "worker mid-message; nothing it reported is used",
            )

    def overdue(self, timeout: float) -> bool:
        limit = timeout if self.stage_index is not None else max(timeout, STARTUP_SECONDS)
        return time.monotonic() - self.since > limit

    def pending(self, start: int = 0) -> int | None:
        """The first target from `start` on without an outcome."""
        return next((i for i in range(start, len(self.configs)) if i not in self.outcomes), None)

    def fail_current(self, what: str, hint: str | None) -> None:
        """The target being analysed ends with `what` happened "while <stage> (<target>)"."""
        index = self.pending()
        if index is None:
            return
        target = self.configs[index].target.raw
        doing = self.stage if target in self.stage else f"{self.stage} ({target})"
        self.outcomes[index] = TargetFailure(
            target=target, stage=self.stage, message=f"{what} while {doing}", hint=hint
        )


def run_targets(
    configs: Sequence[AnalyzeConfig], progress: Progress, timeout: float | None = None
) -> list[Outcome]:
    """Each config's Report, or the TargetFailure that stopped it, in order."""
    collector = Collector(configs, progress)
    if os.environ.get(IN_PROCESS_ENV) == "1":
        from gradcheck_cli.run.worker import run_job

        run_job(Job(configs=tuple(configs)), collector.handle, in_process=True)
    else:
        _supervise(collector, timeout)
    return [collector.outcomes.get(i) or _not_run(c) for i, c in enumerate(configs)]


def _not_run(config: AnalyzeConfig) -> TargetFailure:
    return TargetFailure(
        target=config.target.raw,
        stage="waiting",
        message="not analysed: an earlier target's analysis was interrupted",
        hint="run it again to completion",
    )


def _supervise(collector: Collector, timeout: float | None) -> None:
    while (index := collector.pending()) is not None:
        job = Job(configs=tuple(collector.configs), start=index)
        interrupted = not _run_worker(job, collector, timeout)
        if collector.pending() == index:  # the worker ended without a word about this target
            collector.fail_current("the analysis process ended without a report", None)
        if interrupted:
            return  # the remaining targets are not started


def _run_worker(job: Job, collector: Collector, timeout: float | None) -> bool:
    """One worker over the job's targets; False when the user interrupted it."""
    collector.since, collector.stage, collector.done = time.monotonic(), "starting", False
    collector.stage_index = None
    with worker_process(job) as (process, messages):
        try:
            with signals_raise():
                _read_until_exit(process, messages, collector, timeout)
        except (KeyboardInterrupt, Stopped) as exc:
            kill(process)
            what = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else str(exc)
            collector.fail_current(what, "the analysis did not finish")
            return False
        except WireError as exc:
            kill(process)
            collector.refuse_all(job.start, str(exc))
            return False
        except TimeoutError:
            kill(process)
            collector.fail_current(
                f"timed out after {timeout:g} s",
                "raise --timeout, or make the run smaller (--batches, --steps, --input)",
            )
            return True
    if not collector.done:
        collector.fail_current(
            f"the analysis process ended without a report ({describe_exit(process.returncode)})",
            "something in the model's code ended the process (os._exit, a crash in native code, "
            "running out of memory); re-run with --debug to see Python's fault handler output",
        )
    return True


def describe_exit(returncode: int) -> str:
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    why = {"SIGSEGV": ": a crash in native code", "SIGKILL": ": killed, e.g. by the out-of-memory killer",
           "SIGABRT": ": aborted", "SIGBUS": ": a crash in native code"}.get(name, "")  # fmt: skip
    return f"signal {name}{why}"


def _read_until_exit(
    process: subprocess.Popen[bytes], fd: int, collector: Collector, timeout: float | None
) -> None:
    """Messages until the worker exits. After "done" it has EXIT_GRACE_SECONDS to exit (atexit
    handlers), and anything more it sends breaks the protocol (WireError)."""
    buffer = bytearray()
    pipe_open = True  # the user's code may close every descriptor: then only the process is watched
    finished: float | None = None
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while process.poll() is None:
            if collector.done:
                finished = finished or time.monotonic()
                if time.monotonic() - finished > EXIT_GRACE_SECONDS:
                    kill(process)  # a thread of the user's that never ends: the reports are in
                    break
            elif timeout is not None and collector.overdue(timeout):
                raise TimeoutError
            if pipe_open and selector.select(_TICK):
                pipe_open = _read_into(fd, buffer)
            elif not pipe_open:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=_TICK)
            _dispatch(buffer, collector)
            collector.progress.tick()
    if pipe_open:
        _drain(fd, buffer, collector)
    if collector.done and buffer:
        raise WireError(f"{len(buffer)} bytes after the last complete message")


def _read_into(fd: int, buffer: bytearray) -> bool:
    chunk = os.read(fd, 1 << 16)
    buffer.extend(chunk)
    return bool(chunk)


def _drain(fd: int, buffer: bytearray, collector: Collector) -> None:
    """After the worker exited: what it wrote before, without blocking on a held pipe."""
    os.set_blocking(fd, False)
    with contextlib.suppress(BlockingIOError, OSError):
        while _read_into(fd, buffer):
            pass
    _dispatch(buffer, collector)


def _dispatch(buffer: bytearray, collector: Collector) -> None:
    """Each complete message in `buffer`, decoded as data (JSON against the records' types)."""
    while len(buffer) >= HEADER.size:
        (size,) = HEADER.unpack_from(buffer)
        if size > MAX_MESSAGE_BYTES:
            raise WireError(f"a message of {size} bytes (at most {MAX_MESSAGE_BYTES})")
        if len(buffer) < HEADER.size + size:
            return
        message = decode(bytes(buffer[HEADER.size : HEADER.size + size]))
        del buffer[: HEADER.size + size]
        collector.handle(message)
