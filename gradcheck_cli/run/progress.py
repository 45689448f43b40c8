"""What the CLI shows on stderr while the worker runs: a spinner on a terminal, otherwise one line
per stage once a run has taken a while (CI logs show where a long run is), with the elapsed time.

Torch-free.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO


def _elapsed(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{seconds:.1f}s"


class LineProgress:
    """Plain lines for logs: `gradcheck [12.3s] model.py: measuring 3 batches on cpu`.

    Runs shorter than `after` seconds print nothing. After that, each new stage gets a line as it
    starts, and a stage still running gets a `still ...` line every `every` seconds."""

    def __init__(
        self, targets: Sequence[str], stream: TextIO | None = None, after: float = 5.0, every: float = 30.0
    ) -> None:
        self.targets = list(targets)
        self.stream = stream if stream is not None else sys.stderr
        self.after, self.every = after, every
        self.started = time.monotonic()
        self.text: str | None = None
        self.stage_started = self.started
        self.printed_at: float | None = None

    def _label(self, index: int, text: str) -> str:
        return f"{self.targets[index]}: {text}" if len(self.targets) > 1 else text

    def stage(self, index: int, text: str) -> None:
        now = time.monotonic()
        self.text, self.stage_started, self.printed_at = self._label(index, text), now, None
        if now - self.started >= self.after:
            self._print(now, "")

    def tick(self) -> None:
        now = time.monotonic()
        if self.text is None or now - self.started < self.after:
            return
        if self.printed_at is None:
            self._print(now, "")
        elif now - self.printed_at >= self.every:
            self._print(now, f"still {_elapsed(now - self.stage_started)} into ")

    def _print(self, now: float, prefix: str) -> None:
        self.printed_at = now
        # One write with its newline: a signal between text and newline would glue the error: line on.
        self.stream.write(f"gradcheck [{_elapsed(now - self.started)}] {prefix}{self.text}\n")
        self.stream.flush()

    def close(self) -> None:
        pass


class SpinnerProgress:
    """A Rich status line on a terminal stderr, replaced stage by stage."""

    def __init__(self, targets: Sequence[str], console: Any) -> None:
        self.targets = list(targets)
        self.status = console.status("gradcheck: starting")
        self.status.start()

    def stage(self, index: int, text: str) -> None:
        label = f"{self.targets[index]}: {text}" if len(self.targets) > 1 else text
        self.status.update(f"gradcheck: {label}")

    def tick(self) -> None:
        pass

    def close(self) -> None:
        self.status.stop()


def progress_for(targets: Sequence[str]) -> LineProgress | SpinnerProgress:
    if not _may_be_terminal():
        return LineProgress(targets)  # rich is not imported for a log or a pipe
    from rich.console import Console

    console = Console(stderr=True)
    if console.is_terminal:
        return SpinnerProgress(targets, console)
    return LineProgress(targets)


def _may_be_terminal() -> bool:
    """Whether rich could take stderr for a terminal: it is a TTY, or one of the variables rich
    reads to decide (FORCE_COLOR, TTY_COMPATIBLE) is set, and then rich decides."""
    if any(name in os.environ for name in ("FORCE_COLOR", "TTY_COMPATIBLE")):
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
