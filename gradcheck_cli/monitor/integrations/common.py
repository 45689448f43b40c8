"""What both callbacks share: the fail-on gate and how findings are worded in a log."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from gradcheck_cli.records.findings import FailOn, Finding

FAIL_ON = tuple(level for level in FailOn.choices() if level != FailOn.NEVER)
"""A callback takes None, not "never", for "only report"."""
ACTIONS = ("stop", "raise")


class GradcheckFindingError(RuntimeError):
    """Raised by a callback with action="raise" when a finding reaches `fail_on`."""

    def __init__(self, step: int, findings: tuple[Finding, ...]) -> None:
        self.step = step
        self.findings = findings
        worded = "; ".join(f"{f.severity.value} {f.id}: {f.message}" for f in findings)
        super().__init__(f"gradcheck stopped training at step {step}: {worded}")


def check_options(every: int, fail_on: str | None, action: str) -> None:
    if every < 1:
        raise ValueError(f"every must be at least 1, got {every}")
    if fail_on is not None and fail_on not in FAIL_ON:
        raise ValueError(f"fail_on must be one of {', '.join(FAIL_ON)} or None, got {fail_on!r}")
    if action not in ACTIONS:
        raise ValueError(f"action must be 'stop' or 'raise', got {action!r}")


def failing(findings: Iterable[Finding], fail_on: str | None) -> tuple[Finding, ...]:
    """The findings at or above `fail_on` (none when fail_on is None)."""
    if fail_on is None:
        return ()
    threshold = FailOn(fail_on)
    return tuple(f for f in findings if threshold.fails(f.severity))


LEVELS = {"error": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO}


def log_findings(logger: logging.Logger | Any, step: int, findings: tuple[Finding, ...]) -> None:
    """One log record per new finding, at the finding's severity."""
    for f in findings:
        logger.log(
            LEVELS[f.severity.value], "gradcheck step %d: %s %s: %s", step, f.severity.value, f.id, f.message
        )
