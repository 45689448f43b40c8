"""Weights & Biases: the monitor's numbers and findings through `run.log` (`pip install gradcheck-cli[wandb]`)."""

from __future__ import annotations

from typing import Any

from gradcheck_cli.monitor.sinks import PREFIX, scalar_metrics
from gradcheck_cli.records.findings import Finding
from gradcheck_cli.records.history import StepStats

STEP_KEY = f"{PREFIX}/step"


class WandbSink:
    """Logs to a W&B run (`wandb.run` when none is given), against its own x-axis `gradcheck/step`.

    `define_metric` ties every `gradcheck/*` key to `gradcheck/step`, so the training step is
    the x-axis even when your own `wandb.log` calls count steps differently, and no call here
    passes `step=` (which W&B drops when it is behind the run's own counter). New findings go
    to a `gradcheck/new_findings` table (each id once).
    """

    def __init__(self, run: Any = None) -> None:
        if run is None:
            run = _current_run()
        self.run = run
        run.define_metric(STEP_KEY)
        run.define_metric(f"{PREFIX}/*", step_metric=STEP_KEY)
        self._reported: set[str] = set()

    def write(self, step: int, stats: StepStats, findings: tuple[Finding, ...]) -> None:
        payload: dict[str, Any] = {STEP_KEY: step, **scalar_metrics(stats, findings)}
        new = [f for f in findings if f.id not in self._reported]
        if new:
            import wandb

            rows = [[step, f.id, f.severity.value, ", ".join(f.layers), f.message] for f in new]
            payload[f"{PREFIX}/new_findings"] = wandb.Table(
                columns=["step", "id", "severity", "layers", "message"], data=rows
            )
            self._reported.update(f.id for f in new)
        self.run.log(payload)

    def close(self) -> None:
        """The run is the caller's: it is left open."""


def _current_run() -> Any:
    try:
        import wandb
    except ImportError as error:
        raise ImportError(f"WandbSink needs wandb ({error}): pip install 'gradcheck-cli[wandb]'") from None
    if wandb.run is None:
        raise RuntimeError("WandbSink: no active W&B run; call wandb.init() first or pass run=")
    return wandb.run
