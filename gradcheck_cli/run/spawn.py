"""Start and stop the worker process: its pipes, its process group, where its output goes.

Torch-free; `supervisor` decides what to do with what the worker says.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from gradcheck_cli.run.reaper import become_subreaper, descendants, end_descendants, signals_held
from gradcheck_cli.run.worker import Job, pack_job

_BOOT = "import sys; sys.path[0] = sys.argv[1]; from gradcheck_cli.run.worker import main; main(sys.argv[2:])"
"""`python -c`: the worker imports the same gradcheck_cli as this process, and the working
directory is not on its sys.path (a user's html.py there shadows nothing)."""


@contextlib.contextmanager
def worker_process(job: Job) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    job_read, job_write = os.pipe()
    message_read, message_write = os.pipe()
    package_parent = str(Path(__file__).resolve().parents[2])
    output, relay = _worker_output()
    sys.stderr.flush()
    become_subreaper()  # the orphans of whatever the model's code starts stay in our process tree
    earlier = descendants()
    process = subprocess.Popen(
        [sys.executable, "-c", _BOOT, package_parent, str(job_read), str(message_write)],
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        pass_fds=(job_read, message_write),
        **_own_process_group(),
    )
    os.close(job_read)
    os.close(message_write)
    if relay is not None:
        relay(process)
    try:
        with contextlib.suppress(BrokenPipeError):
            os.write(job_write, pack_job(job))  # small (the configs); the worker reads it first thing
        yield process, message_read
    finally:
        os.close(job_write)  # the worker's watchdog sees EOF and exits, should it still run
        os.close(message_read)
        end_run(process, earlier)


def end_run(process: subprocess.Popen[bytes], earlier: set[int]) -> None:
    """The worker, its process group and every process the run started end here, normally or not:
    a child left in the group, a `setsid` grandchild (re-parented to us, the subreaper)."""
    with signals_held():  # a signal now would leave the cleanup half done: it is taken after it
        kill_group(process)
        process.wait()
        end_descendants(keep=earlier)


def _own_process_group() -> dict[str, Any]:
    """The worker and whatever it starts (DataLoader workers) form one group, killed together."""
    if sys.version_info >= (3, 11):
        return {"process_group": 0}
    return {"preexec_fn": os.setpgrp}  # pragma: no cover (Python 3.10)


def _worker_output() -> tuple[int, Any]:
    """The worker writes to our stderr's file descriptor, or through a relay where there is none."""
    try:
        return sys.stderr.fileno(), None
    except (AttributeError, OSError, ValueError):  # e.g. a test runner's in-memory stderr
        return subprocess.PIPE, _start_relay


def _start_relay(process: subprocess.Popen[bytes]) -> None:
    def copy(stream: IO[bytes]) -> None:
        for line in iter(stream.readline, b""):
            sys.stderr.write(line.decode(errors="replace"))

    assert process.stdout is not None
    threading.Thread(target=copy, args=(process.stdout,), daemon=True).start()


def kill(process: subprocess.Popen[bytes]) -> None:
    kill_group(process)
    process.wait()


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL to the worker's process group, also once the worker itself has exited (a child the
    model started in the group would outlive it). Linux does not hand out a pid that is still a
    process group's id, so the group named by the worker's pid is the worker's while it exists."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
