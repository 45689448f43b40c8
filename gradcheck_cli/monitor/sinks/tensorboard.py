"""TensorBoard: the monitor's numbers as scalars, its findings as text (`pip install gradcheck-cli[tensorboard]`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gradcheck_cli.monitor.sinks import PREFIX, findings_markdown, scalar_metrics
from gradcheck_cli.records.findings import Finding
from gradcheck_cli.records.history import StepStats


class TensorBoardSink:
    """Writes through a `torch.utils.tensorboard.SummaryWriter`: yours, or one it opens on `log_dir`.

    Scalars follow the layout of `gradcheck_cli.monitor.sinks`; the x-axis is the training step.
    Findings go to the TEXT tab under `gradcheck/findings` on the steps that have any.
    """

    def __init__(self, writer: Any = None, *, log_dir: str | Path | None = None) -> None:
        if writer is None:
            writer = _summary_writer(log_dir)
            self._owned = True
        else:
            self._owned = False
        self.writer = writer

    def write(self, step: int, stats: StepStats, findings: tuple[Finding, ...]) -> None:
        for tag, value in scalar_metrics(stats, findings).items():
            self.writer.add_scalar(tag, value, global_step=step)
        if findings:
            self.writer.add_text(f"{PREFIX}/findings", findings_markdown(step, findings), global_step=step)
        self.writer.flush()

    def close(self) -> None:
        if self._owned:
            self.writer.close()
        else:
            self.writer.flush()


def _summary_writer(log_dir: str | Path | None) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ImportError(
            f"TensorBoardSink needs tensorboard ({error}): pip install 'gradcheck-cli[tensorboard]'"
        ) from None
    return SummaryWriter(log_dir=None if log_dir is None else str(log_dir))
