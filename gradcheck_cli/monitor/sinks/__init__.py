"""Where a monitor's measured steps go: a Sink is anything with write() and close().

Built in: JSON lines (`JsonLinesSink`, what `GradientMonitor(jsonl=...)` uses), TensorBoard
(`gradcheck_cli.monitor.sinks.tensorboard.TensorBoardSink`) and Weights & Biases
(`gradcheck_cli.monitor.sinks.wandb.WandbSink`). The last two import their library only when built.
Every scalar sink uses the same tag layout, from `scalar_metrics`:

    gradcheck/grad_norm/<layer>            L2 norm of the layer's parameter gradient
    gradcheck/grad_weight_ratio/<layer>    that norm over the layer's weight norm
    gradcheck/dead_fraction/<activation>   ReLU-family units never positive on the batch
    gradcheck/saturated_fraction/<activation>   sigmoid/tanh outputs in the flat tails
    gradcheck/nonfinite_layers             layers with a NaN/inf gradient element
    gradcheck/findings/<severity>          findings at this step (error, warning, info)

and findings as text under `gradcheck/findings` (TensorBoard: one Markdown line per finding) or
as a `gradcheck/new_findings` table (W&B: each id the first time it appears).
"""

from __future__ import annotations

from typing import Protocol

from gradcheck_cli.records.findings import Finding, Severity
from gradcheck_cli.records.history import StepStats

PREFIX = "gradcheck"


class Sink(Protocol):
    def write(self, step: int, stats: StepStats, findings: tuple[Finding, ...]) -> None:
        """One measured step: its statistics and all its findings (new or not)."""

    def close(self) -> None:
        """Flush and release what the sink opened (not what it was given)."""


def scalar_metrics(stats: StepStats, findings: tuple[Finding, ...]) -> dict[str, float]:
    """The step's numbers under the stable tag layout above."""
    metrics: dict[str, float] = {}
    for layer in stats.layers:
        metrics[f"{PREFIX}/grad_norm/{layer.name}"] = layer.grad_norm
        metrics[f"{PREFIX}/grad_weight_ratio/{layer.name}"] = layer.grad_weight_ratio
    for unit in stats.units:
        kind = "dead_fraction" if unit.family == "relu" else "saturated_fraction"
        metrics[f"{PREFIX}/{kind}/{unit.name}"] = getattr(unit, kind)
    metrics[f"{PREFIX}/nonfinite_layers"] = float(sum(1 for layer in stats.layers if layer.nonfinite))
    for severity in Severity:
        metrics[f"{PREFIX}/findings/{severity.value}"] = float(sum(f.severity is severity for f in findings))
    return metrics


def findings_markdown(step: int, findings: tuple[Finding, ...]) -> str:
    """One Markdown line per finding, for text panels (TensorBoard TEXT, W&B)."""
    if not findings:
        return f"step {step}: no findings"
    return "\n\n".join(f"**step {step}** `{f.severity.value}` **{f.id}**: {f.message}" for f in findings)
