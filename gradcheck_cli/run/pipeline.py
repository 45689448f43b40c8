"""analyze(config) -> Report: the only module that knows the order of the stages.

load -> inputs -> (train) -> collect -> diagnose -> policy -> (fixes) -> (baseline) -> report.
The torch stages themselves live in `session`; this module only calls them in order.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from torch import nn

from gradcheck_cli.config.analyze_config import AnalyzeConfig
from gradcheck_cli.judge.diagnose import check_threshold_ids, diagnose
from gradcheck_cli.judge.policy import apply_policy
from gradcheck_cli.load.target import LoadedModel, load
from gradcheck_cli.measure import distributed
from gradcheck_cli.measure.collect import probe
from gradcheck_cli.measure.device import seed_everything
from gradcheck_cli.measure.inputs import Batch
from gradcheck_cli.measure.preparation import prepare
from gradcheck_cli.measure.session import (
    Session,
    forward,
    load_checkpoint,
    loss_of,
    measure_precision,
    train_steps,
)
from gradcheck_cli.measure.versus import measure_versus, snapshot
from gradcheck_cli.records.report import Report, build_report
from gradcheck_cli.records.stats import ProbeResult
from gradcheck_cli.records.text import count
from gradcheck_cli.run.confirm import confirm, needs_confirmation

__all__ = ["Session", "analyze", "analyze_loaded", "forward", "loss_of", "prepare", "probe", "train_steps"]

Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    pass


def analyze(config: AnalyzeConfig, progress: Progress = _quiet) -> Report:
    started = time.perf_counter()
    check_threshold_ids(config.thresholds)
    seed_everything(config.seed)
    progress(f"loading {config.target.raw}")
    loaded = load(config.target, config.init_args, config.arch_opts)
    return analyze_loaded(config, loaded, progress=progress, started=started)


def analyze_loaded(
    config: AnalyzeConfig,
    loaded: LoadedModel,
    batches: list[Batch] | None = None,
    progress: Progress = _quiet,
    started: float | None = None,
) -> Report:
    """The stages after loading, for a model loaded from TARGET or handed over by the Python API.

    `batches`, when given, are used as they are instead of being built from the config."""
    started = time.perf_counter() if started is None else started
    distributed.setup()
    progress("building the inputs")
    session = prepare(config, loaded, batches)
    session.progress = progress
    init_state = snapshot(session.loaded.module) if config.versus == "init" else None
    if config.weights is not None:
        progress(f"loading weights from {config.weights}")
        load_checkpoint(session)
    pristine = _snapshot_for_fixes(session) if config.try_fixes and config.steps else None
    if config.steps:
        progress(f"training {count(config.steps, 'step')}")
        train_steps(session)
    if config.dtype == "float16":
        progress("measuring float16 underflow with and without loss scaling")
        measure_precision(session)
    progress(f"measuring {count(len(session.batches), 'batch')} on {session.device}")
    if config.versus is not None:
        seed_everything(config.seed)  # both states see the same random draws (dropout)
    result = probe(session, started)
    if config.versus is not None:
        progress(f"measuring the reference state ({config.versus}) on the same batches")
        result = measure_versus(session, result, init_state, started)
    progress("diagnosing")
    diagnosis = diagnose(result, config.thresholds)
    report = build_report(config.target.raw, result, diagnosis.findings, diagnosis.layer_status)
    report = apply_policy(report, config.severity, config.ignore, config.select)
    if needs_confirmation(report, config, batches is not None):
        progress("confirming the errors on a second measurement (a larger batch, another seed)")
        report = confirm(report, session, started)
    if config.try_fixes:
        progress("trying the suggested fixes on copies of the model")
        report = _with_tried_fixes(report, session, result, pristine)
    if config.baseline is not None:
        from gradcheck_cli.judge.baseline import apply_baseline

        report = apply_baseline(report, config.baseline, config.baseline_orders)
    return report


def _snapshot_for_fixes(session: Session) -> nn.Module | None:
    """--try-fixes with --steps: fixes start from the model as built, then train the same steps."""
    from gradcheck_cli.repair.measure import snapshot

    return snapshot(session.loaded.module)


def _with_tried_fixes(
    report: Report, session: Session, result: ProbeResult, pristine: nn.Module | None
) -> Report:
    """The findings after policy choose what is tried; each copy is judged by the same policy."""
    from gradcheck_cli.repair.measure import CopyMeasurer
    from gradcheck_cli.repair.runner import try_fixes

    tried = try_fixes(report.findings, result, CopyMeasurer(session, pristine))
    return dataclasses.replace(report, fixes=tried)
