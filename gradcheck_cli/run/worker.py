"""The analysis process: runs the pipeline on each target and sends what came of it to the supervisor.

`python -m gradcheck_cli.run.worker JOB_FD MESSAGE_FD` is started by `supervisor`. It reads one `Job`
(pickled: it comes from the supervisor, before any user code runs) from JOB_FD and writes
length-prefixed JSON messages (`records.wire`, never a pickle) to MESSAGE_FD:

    ("stage", index, text)        the target at `index` entered a stage ("measuring 3 batches on cpu")
    ("report", index, Report)     its report
    ("failure", index, TargetFailure)
    ("scale", index, ScaleReport)   `gradcheck scale`: a width sweep's report
    ("done",)                     every target of the job has its report or its failure

Its stdout and stderr are the supervisor's stderr, so nothing the user's code writes, by any means,
can reach the supervisor's stdout. Whatever the user's code raises (SystemExit and
KeyboardInterrupt included) becomes a TargetFailure; if the process dies instead, the supervisor
sees it end without "done" and reports that. Before each stage and before a report is sent,
`integrity` checks that the user's code replaced none of gradcheck's functions, rules or torch's
hook entry points; a report in which no layer was measured is a failure, never a pass. The same
`run_job` runs in the CLI's own process when GRADCHECK_IN_PROCESS=1 (tests not about isolation).

Torch-free at import: the pipeline (and torch) are imported when the job runs.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import struct
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradcheck_cli.config.analyze_config import AnalyzeConfig
from gradcheck_cli.records import wire
from gradcheck_cli.records.errors import GradcheckError
from gradcheck_cli.records.outcome import TargetFailure
from gradcheck_cli.records.scaling import ScaleReport
from gradcheck_cli.records.wire import nothing_measured
from gradcheck_cli.run.integrity import Snapshot, TamperedError

Send = Callable[[tuple[Any, ...]], None]
HEADER = struct.Struct(">I")


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    configs: tuple[AnalyzeConfig, ...]
    start: int = 0
    """Index of the first target to run (a restarted worker skips those already done)."""


class StageTracker:
    """The pipeline's progress callback: remembers the current stage and tells the supervisor;
    at each new stage, checks that nothing gradcheck relies on was replaced (`integrity`)."""

    def __init__(self, index: int, send: Send, snapshot: Snapshot | None = None) -> None:
        self.index, self.send, self.stage, self.snapshot = index, send, "starting", snapshot

    def __call__(self, text: str) -> None:
        if self.snapshot is not None:
            self.snapshot.check(f"before {text}")
        self.stage = text
        self.send(("stage", self.index, text))


def run_job(job: Job, send: Send, in_process: bool = False) -> None:
    """Each target in turn; `in_process`: a KeyboardInterrupt is the user's Ctrl-C and stops them all
    (in the worker process, where the supervisor handles Ctrl-C, only the user's code raises it)."""
    snapshot = None
    for index in range(job.start, len(job.configs)):
        config = job.configs[index]
        tracker = StageTracker(index, send, snapshot)
        try:
            snapshot = tracker.snapshot = snapshot or _snapshot()
            report = _checked(_analyze(config, tracker), tracker)
        except KeyboardInterrupt as exc:
            send(("failure", index, failure(config, tracker.stage, exc)))
            if in_process:
                break
        except BaseException as exc:  # whatever the user's code raises never decides the exit code
            send(("failure", index, failure(config, tracker.stage, _tampering_or(exc, tracker))))
        else:
            send(("scale" if isinstance(report, ScaleReport) else "report", index, report))
    send(("done",))


def _snapshot() -> Snapshot:
    """After gradcheck's pipeline and torch are imported, before any of the user's code runs."""
    from gradcheck_cli.run import pipeline  # noqa: F401  (what the snapshot is of)

    return Snapshot.take()


def _checked(report: Any, tracker: StageTracker) -> Any:
    """The report, once nothing was replaced while it was made and something was measured."""
    if tracker.snapshot is not None:
        tracker.snapshot.check("while the report was made")
    if nothing_measured(report):
        raise TamperedError(
            "no layer's gradient was measured: gradcheck's hooks never fired, so the report could "
            "say nothing about gradient flow",
            "does the model's code replace torch's hooks or run its layers outside forward()?",
        )
    return report


def _tampering_or(exc: BaseException, tracker: StageTracker) -> BaseException:
    """What stopped the run: a replaced hook or rule explains the error it caused (a run that
    measured nothing because `register_hook` was replaced is reported as the replacement)."""
    if tracker.snapshot is not None and not isinstance(exc, TamperedError):
        try:
            tracker.snapshot.check("while the report was made")
        except TamperedError as tampered:
            return tampered
    return exc


def _analyze(config: AnalyzeConfig, progress: Callable[[str], None]) -> Any:
    import gc
    import warnings

    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
    from gradcheck_cli.run.pipeline import analyze_target

    # torch's import leaves ~10^6 objects that every full garbage collection would walk
    # again (90 ms a time on a short run); they live until exit, so take them out of GC.
    gc.freeze()
    with _script_argv(config):
        if config.scale is not None:  # `gradcheck scale`: a width sweep, not an analysis
            from gradcheck_cli.run.scale_pipeline import scale_target

            return scale_target(config, progress)
        return analyze_target(config, progress=progress)


@contextlib.contextmanager
def _script_argv(config: AnalyzeConfig) -> Iterator[None]:
    """The user's code sees argv = [its file], never gradcheck's flags (a parse_args() in build_model)."""
    saved = sys.argv
    sys.argv = [config.target.location if config.target.kind == "file" else "gradcheck"]
    try:
        yield
    finally:
        sys.argv = saved


def failure(config: AnalyzeConfig, stage: str, exc: BaseException) -> TargetFailure:
    target = config.target.raw
    details = "".join(traceback.format_exception(exc))
    if isinstance(exc, GradcheckError):
        return TargetFailure(target=target, stage=stage, message=exc.message, hint=exc.hint, details=details)
    doing = stage if target in stage else f"{stage} ({target})"
    where = _user_frame(config, exc)
    at = f", at {where}" if where else ""
    if isinstance(exc, SystemExit):
        message = f"the model's code called sys.exit({exc.code!r}) while {doing}{at}"
        hint = (
            "gradcheck runs the model's code, and the model's exits stop only the analysis: remove the "
            'exit, or move the script part under `if __name__ == "__main__":`'
        )
    elif _out_of_memory(exc):
        message = f"out of memory while {doing}{at}: {_first_line(exc)}"
        hint = "make the run smaller (--input, --batch-size, --batches) or use a device with more memory"
    elif isinstance(exc, KeyboardInterrupt):
        message = f"interrupted while {doing}{at}"
        hint = "the analysis did not finish; run it again to completion"
    else:
        message = f"unexpected {type(exc).__name__} while {doing}{at}: {_first_line(exc)}"
        hint = "re-run with --debug for the traceback; if it points into gradcheck, please report it"
    return TargetFailure(target=target, stage=stage, message=message, hint=hint, details=details)


def _out_of_memory(exc: BaseException) -> bool:
    """MemoryError, torch.OutOfMemoryError (a RuntimeError), or the CPU allocator's refusal."""
    text = str(exc)
    return isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError) and ("out of memory" in text.lower() or "can't allocate memory" in text)
    )


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _user_frame(config: AnalyzeConfig, exc: BaseException) -> str | None:
    """`model.py:12: source line` of the innermost frame in the user's file's project, if any."""
    if config.target.kind != "file":
        return None
    from gradcheck_cli.load.importing import package_root
    from gradcheck_cli.load.source import user_frame

    return user_frame(exc, package_root(Path(config.target.location).resolve().parent))


# --- the worker process ------------------------------------------------------------------------


def _read_exactly(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            raise EOFError("the supervisor closed the job pipe")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_job(fd: int) -> Job:
    """The job from the supervisor (the trusted side: it is read before the user's code runs)."""
    (size,) = HEADER.unpack(_read_exactly(fd, HEADER.size))
    job = pickle.loads(_read_exactly(fd, size))
    assert isinstance(job, Job)
    return job


def pack_job(job: Job) -> bytes:
    data = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(data)) + data


def pack(message: tuple[Any, ...]) -> bytes:
    """One message to the supervisor: its length, then JSON (`records.wire`)."""
    data = wire.encode(wire.as_fields(message))
    return HEADER.pack(len(data)) + data


def _sender(fd: int) -> Send:
    lock = threading.Lock()

    def send(message: tuple[Any, ...]) -> None:
        data = pack(message)
        with lock:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]

    return send


def _exit_with_supervisor(job_fd: int) -> None:
    """The supervisor holds the job pipe open while it waits: EOF means it is gone, so stop too."""
    try:
        while os.read(job_fd, 4096):
            pass
    except OSError:
        pass
    os._exit(3)


def main(argv: list[str]) -> None:
    job_fd, message_fd = int(argv[0]), int(argv[1])
    for fd in (job_fd, message_fd):
        os.set_inheritable(fd, False)  # processes the user's code starts never hold them
    # The supervisor handles Ctrl-C (it stops this process); the user's code may still raise it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    job = read_job(job_fd)
    if any(config.debug for config in job.configs):
        import faulthandler

        faulthandler.enable()  # a segfault in native code prints the Python stack first
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    threading.Thread(target=_exit_with_supervisor, args=(job_fd,), daemon=True).start()
    run_job(job, _sender(message_fd))
    sys.stdout.flush()
    sys.stderr.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
