"""JSON lines: one line per measured step, the report document plus the loss and units."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from gradcheck_cli.records.files import PROTECTED_SUFFIXES, real_path
from gradcheck_cli.records.findings import Finding
from gradcheck_cli.records.history import StepStats
from gradcheck_cli.records.loop import loop_document


def line_of(stats: StepStats) -> dict[str, Any]:
    """`{"step", "seconds", <gradcheck.report/1 document>, "loss", "loss_nonfinite", "activations"}`."""
    loss = stats.loss
    line: dict[str, Any] = {"step": stats.step, "seconds": round(stats.seconds, 6)}
    line.update(stats.document or {})
    line["loss"] = loss if loss is not None and math.isfinite(loss) else None
    line["loss_nonfinite"] = loss is not None and not math.isfinite(loss)
    line["activations"] = [
        {
            "name": u.name,
            "family": u.family,
            "after": u.after,
            "dead_fraction": u.dead_fraction if math.isfinite(u.dead_fraction) else None,
            "saturated_fraction": u.saturated_fraction if math.isfinite(u.saturated_fraction) else None,
        }
        for u in stats.units
    ]
    if stats.loop is not None:
        line["loop"] = loop_document(stats.loop)
    return line


class JsonLinesSink:
    """Appends one line per measured step to `path` (what `gradcheck report` reads)."""

    needs_document = True
    """The monitor attaches each step's whole report document (StepStats.document)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if real_path(self.path).suffix.lower() in PROTECTED_SUFFIXES:  # through symlinks, as --output
            raise ValueError(f"jsonl={str(path)!r} is Python source: the monitor never appends to code")
        self._file = self.path.open("a", encoding="utf-8")

    def write(self, step: int, stats: StepStats, findings: tuple[Finding, ...]) -> None:
        self._file.write(json.dumps(line_of(stats), allow_nan=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
