"""gradcheck: does the gradient flow through your PyTorch model, and what to change when it doesn't.

The public Python API is exactly the names in `gradcheck_cli.__all__`, importable from here:

    from gradcheck_cli import analyze, GradientMonitor, LightningCallback, JsonLinesSink, Report

Anything not in `__all__` (every module under gradcheck_cli/, their functions and classes) is
internal: it may be renamed, moved or removed in any release. The command line, its exit codes,
the JSON schema and the finding ids are the other public contract (docs/contract).

Every name is imported on first use, so `import gradcheck_cli` (and the CLI's --help) stays free
of torch, and the callbacks import their framework (Lightning, transformers) only when asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> (module, name there). The one list of the public face; see the module docstring.
_LAZY: dict[str, tuple[str, str]] = {
    # analysing a model
    "analyze": ("gradcheck_cli.run.api", "analyze"),
    "AnalysisReport": ("gradcheck_cli.run.api", "AnalysisReport"),
    # what a report holds
    "Report": ("gradcheck_cli.records.report", "Report"),
    "LayerRow": ("gradcheck_cli.records.report", "LayerRow"),
    "Summary": ("gradcheck_cli.records.report", "Summary"),
    "LayerStats": ("gradcheck_cli.records.stats", "LayerStats"),
    "Finding": ("gradcheck_cli.records.findings", "Finding"),
    "Suggestion": ("gradcheck_cli.records.findings", "Suggestion"),
    "Severity": ("gradcheck_cli.records.findings", "Severity"),
    "LayerStatus": ("gradcheck_cli.records.findings", "LayerStatus"),
    "FailOn": ("gradcheck_cli.records.findings", "FailOn"),
    "GradcheckError": ("gradcheck_cli.records.errors", "GradcheckError"),
    # watching a training loop
    "GradientMonitor": ("gradcheck_cli.monitor.gradient_monitor", "GradientMonitor"),
    "LightningCallback": ("gradcheck_cli.monitor.integrations.lightning", "GradcheckCallback"),
    "TransformersCallback": ("gradcheck_cli.monitor.integrations.transformers", "GradcheckCallback"),
    "GradcheckFindingError": ("gradcheck_cli.monitor.integrations.common", "GradcheckFindingError"),
    # where a monitor's steps go
    "Sink": ("gradcheck_cli.monitor.sinks", "Sink"),
    "JsonLinesSink": ("gradcheck_cli.monitor.sinks.jsonl", "JsonLinesSink"),
    "TensorBoardSink": ("gradcheck_cli.monitor.sinks.tensorboard", "TensorBoardSink"),
    "WandbSink": ("gradcheck_cli.monitor.sinks.wandb", "WandbSink"),
    # a monitor's run file (`gradcheck report RUN.jsonl`)
    "RunReport": ("gradcheck_cli.judge.run_verdict", "RunReport"),
    "read_run_report": ("gradcheck_cli.judge.run_verdict", "build_run_report"),
}

__all__ = [
    "__version__",
    "analyze",
    "AnalysisReport",
    "Report",
    "LayerRow",
    "Summary",
    "LayerStats",
    "Finding",
    "Suggestion",
    "Severity",
    "LayerStatus",
    "FailOn",
    "GradcheckError",
    "GradientMonitor",
    "LightningCallback",
    "TransformersCallback",
    "GradcheckFindingError",
    "Sink",
    "JsonLinesSink",
    "TensorBoardSink",
    "WandbSink",
    "RunReport",
    "read_run_report",
]

assert set(__all__) == {"__version__", *_LAZY}, "the public list and the lazy table disagree"

if TYPE_CHECKING:
    from gradcheck_cli.judge.run_verdict import RunReport
    from gradcheck_cli.judge.run_verdict import build_run_report as read_run_report
    from gradcheck_cli.monitor.gradient_monitor import GradientMonitor
    from gradcheck_cli.monitor.integrations.common import GradcheckFindingError
    from gradcheck_cli.monitor.integrations.lightning import GradcheckCallback as LightningCallback
    from gradcheck_cli.monitor.integrations.transformers import GradcheckCallback as TransformersCallback
    from gradcheck_cli.monitor.sinks import Sink
    from gradcheck_cli.monitor.sinks.jsonl import JsonLinesSink
    from gradcheck_cli.monitor.sinks.tensorboard import TensorBoardSink
    from gradcheck_cli.monitor.sinks.wandb import WandbSink
    from gradcheck_cli.records.errors import GradcheckError
    from gradcheck_cli.records.findings import FailOn, Finding, LayerStatus, Severity, Suggestion
    from gradcheck_cli.records.report import LayerRow, Report, Summary
    from gradcheck_cli.records.stats import LayerStats
    from gradcheck_cli.run.api import AnalysisReport, analyze


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gradcheck_cli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
