"""Nothing the run starts outlives it, and no signal ends the CLI without its exit code.

On Linux the CLI process becomes a *child subreaper* (`prctl(PR_SET_CHILD_SUBREAPER)`): a process
the model's code starts and orphans, even one that left the worker's process group with `setsid`
or a double fork, is re-parented to the CLI instead of to init, so it stays in the CLI's process
tree. When a worker ends (normally, by --timeout, by a signal), its process group is killed and
then every descendant of the CLI that was not there before the run started.

Elsewhere (macOS, Windows: no subreaper, no /proc) only the worker's process group is killed: a
process that leaves the group can outlive the run there, and the README says so.

`signals_raise` turns every catchable signal whose default is to end the process (SIGHUP,
SIGUSR1, SIGTERM, real-time signals, ...) into `Stopped` while a command runs, so that the command
ends in its error boundary: exit 2 and an `error:` line naming the signal. SIGINT stays Python's
KeyboardInterrupt (Ctrl-C); faults (SIGSEGV, SIGBUS, SIGFPE, SIGILL) and SIGKILL/SIGSTOP are left as
they are.

Torch-free.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

PR_SET_CHILD_SUBREAPER = 36
_ENDING = ("SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGTERM", "SIGVTALRM", "SIGPROF",
           "SIGXCPU", "SIGXFSZ", "SIGIO", "SIGPWR", "SIGSTKFLT", "SIGSYS", "SIGABRT", "SIGTRAP")  # fmt: skip
_state: dict[str, bool] = {}


class Stopped(BaseException):
    """A signal ended the command (a BaseException, like KeyboardInterrupt: no `except Exception`
    in gradcheck or in the user's code swallows it)."""

    def __init__(self, signum: int) -> None:
        try:
            self.name = signal.Signals(signum).name
        except ValueError:
            self.name = f"signal {signum}"
        super().__init__(f"stopped ({self.name})")


def ending_signals() -> list[int]:
    """Every catchable signal whose default action ends the process, SIGINT aside."""
    found = [getattr(signal, name) for name in _ENDING if hasattr(signal, name)]
    if hasattr(signal, "SIGRTMIN"):
        found += range(signal.SIGRTMIN, signal.SIGRTMAX + 1)
    return found


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """While the block runs (main thread only), an ending signal raises Stopped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise Stopped(signum)

    previous = {}
    for signum in ending_signals():
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            previous[signum] = signal.signal(signum, stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            with contextlib.suppress(OSError, ValueError, RuntimeError, TypeError):
                signal.signal(signum, handler)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Ending signals and SIGINT wait until the block is done (where the platform can block them)."""
    held = [*ending_signals(), signal.SIGINT]
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def become_subreaper() -> bool:
    """Adopt the orphans of everything this process starts (Linux); False where that is not possible."""
    if "subreaper" not in _state:
        _state["subreaper"] = _prctl_subreaper()
    return _state["subreaper"]


def _prctl_subreaper() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def descendants(root: int | None = None) -> set[int]:
    """Every process below `root` (this process) in the process tree; empty without /proc."""
    root = os.getpid() if root is None else root
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return set()
    for entry in entries:
        if entry.isdigit():
            parent = _parent_of(int(entry))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry))
    found: set[int] = set()
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()  # the name may hold spaces and parens
        return int(fields[1])
    except (OSError, IndexError, ValueError):
        return None


def end_descendants(keep: set[int], rounds: int = 50) -> list[int]:
    """Kill every descendant of this process not in `keep` and reap those that become its children;
    repeated until none is left (a dying parent's orphans are re-parented here). The pids ended."""
    ended: list[int] = []
    for _ in range(rounds):
        left = descendants() - keep
        if not left:
            break
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
            ended.append(pid)
        time.sleep(0.01)
        _reap(left)
    return sorted(set(ended))


def _reap(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
