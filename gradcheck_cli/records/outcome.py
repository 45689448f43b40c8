"""What one target's analysis came to when it produced no report: a record the worker sends to the
supervisor, the CLI prints as `error:`/`hint:` and the combined reports list (JUnit error, Markdown row).

Torch-free: it crosses the process boundary as JSON (records.wire) and is read by the supervisor.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetFailure:
    """A target that could not be analysed (exit 2)."""

    target: str
    """The TARGET as written (model.py, builtin:NAME, ...)."""
    stage: str
    """What gradcheck was doing, e.g. "loading model.py" or "measuring 3 batches on cpu"."""
    message: str
    """One line: what went wrong and where."""
    hint: str | None = None
    details: str | None = None
    """The traceback, printed only under --debug."""
