"""analyze_target(config) -> Report: the only module that knows the order of the stages.

load -> inputs -> (weights) -> (train) -> (float16) -> collect -> (versus) -> diagnose -> policy
-> (fixes) -> (baseline) -> report. Each stage returns a frozen record; this module passes each
on to the stages that read it, and no stage calls back into an earlier one.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from torch import nn

from gradcheck_cli.config.analyze_config import AnalyzeConfig
from gradcheck_cli.judge.diagnose import check_threshold_ids, diagnose
from gradcheck_cli.judge.evidence import require_evidence
from gradcheck_cli.judge.policy import apply_policy
from gradcheck_cli.load.target import LoadedModel, load
from gradcheck_cli.measure import distributed
from gradcheck_cli.measure.batches import Batch
from gradcheck_cli.measure.collect import probe
from gradcheck_cli.measure.device import seed_everything
from gradcheck_cli.measure.passes import Prepared, StageRecords
from gradcheck_cli.measure.preparation import GIVEN, prepare
from gradcheck_cli.measure.versus import State, measure_versus, state_copy
from gradcheck_cli.records.headroom import LrHeadroom
from gradcheck_cli.records.precision import PrecisionHeadroom
from gradcheck_cli.records.report import Report, build_report
from gradcheck_cli.records.stats import Fp16Underflow, ProbeResult, TrainingHistory
from gradcheck_cli.records.text import count
from gradcheck_cli.records.trained import CheckpointInfo
from gradcheck_cli.run.confirm import confirm, needs_confirmation

__all__ = ["analyze_loaded", "analyze_target"]

Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    pass


def analyze_target(config: AnalyzeConfig, progress: Progress = _quiet) -> Report:
    """Load `config.target` and analyse it: what the worker runs for each target of the CLI."""
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
    if config.weights is not None and not config.dtype_given:
        from gradcheck_cli.load.trained_precision import with_trained_precision

        config = with_trained_precision(config)
    progress("building the inputs")
    prepared = prepare(config, loaded, batches, progress=progress)
    init_state = state_copy(prepared.model) if config.versus == "init" else None
    checkpoint, optimizer_state = _load_checkpoint(prepared, progress)
    pristine = _pristine_for_fixes(prepared) if config.try_fixes and config.steps else None
    headroom = _headroom(prepared, optimizer_state, progress) if config.lr_headroom else None
    training = None
    if config.steps:
        progress(f"training {count(config.steps, 'step')}")
        training = _train(prepared, optimizer_state)
    records = StageRecords(
        checkpoint=checkpoint,
        training=training,
        fp16_underflow=_precision(prepared, progress),
        precision=_formats(prepared, progress),
        lr_headroom=headroom,
    )
    result = _collect(prepared, records, init_state, started, progress)
    return _judge(config, prepared, result, pristine, progress, started)


def _load_checkpoint(prepared: Prepared, progress: Progress) -> tuple[CheckpointInfo | None, Any]:
    """--weights: copy the checkpoint into the model (on the analysis device); what was loaded and
    the optimizer state it holds (for --steps). Without --weights: (None, None)."""
    weights = prepared.config.weights
    if weights is None:
        return None, None
    from gradcheck_cli.load.weights import load_weights

    progress(f"loading weights from {weights}")
    info, raw = load_weights(prepared.model, weights, prepared.device, prepared.config.weights_partial)
    return info, raw.optimizer_state


def _train(prepared: Prepared, optimizer_state: Any) -> TrainingHistory:
    from gradcheck_cli.measure.train_stage import train_steps

    return train_steps(prepared, optimizer_state)


def _headroom(prepared: Prepared, optimizer_state: Any, progress: Progress) -> LrHeadroom:
    """--lr-headroom, on the model as loaded (before --steps trains it); the model is put back."""
    from gradcheck_cli.measure.lr_headroom import measure_headroom

    config = prepared.config
    multipliers = ", ".join(f"{m:g}x" for m in config.headroom_multipliers)
    progress(f"measuring the learning-rate headroom ({config.headroom_steps} steps at {multipliers})")
    return measure_headroom(prepared, optimizer_state)


def _precision(prepared: Prepared, progress: Progress) -> Fp16Underflow | None:
    """float16: the underflow measurement and its loss scale; None for other dtypes."""
    if prepared.config.dtype != "float16":
        return None
    from gradcheck_cli.measure.underflow import measure_precision

    progress("measuring float16 underflow with and without loss scaling")
    return measure_precision(prepared)


def _formats(prepared: Prepared, progress: Progress) -> PrecisionHeadroom | None:
    """--precision: each layer's headroom in the number formats asked for; None without it."""
    if not prepared.config.precision:
        return None
    from gradcheck_cli.measure.formats import measure_formats

    progress(f"measuring each layer in {', '.join(prepared.config.precision)}")
    return measure_formats(prepared, prepared.config.precision)


def _collect(
    prepared: Prepared, records: StageRecords, init_state: State | None, started: float, progress: Progress
) -> ProbeResult:
    """The measured passes, and under --versus the reference state measured the same way."""
    config = prepared.config
    progress(f"measuring {count(len(prepared.batches), 'batch')} on {prepared.device}")
    if config.versus is not None:
        seed_everything(config.seed)  # both states see the same random draws (dropout)
    result = probe(prepared, started, records)
    if config.versus is not None:
        progress(f"measuring the reference state ({config.versus}) on the same batches")
        result = measure_versus(prepared, records, result, init_state, started)
    return result


def _judge(
    config: AnalyzeConfig,
    prepared: Prepared,
    result: ProbeResult,
    pristine: nn.Module | None,
    progress: Progress,
    started: float,
) -> Report:
    """Findings, the policy, the fixes tried on copies (--try-fixes) and the baseline."""
    require_evidence(result)
    progress("diagnosing")
    diagnosis = diagnose(result, config.thresholds)
    report = build_report(config.target.raw, result, diagnosis.findings, diagnosis.layer_status)
    report = apply_policy(report, config.severity, config.ignore, config.select)
    if needs_confirmation(report, config, prepared.plan.origin == GIVEN):
        progress("confirming the errors on a second measurement (a larger batch, another seed)")
        report = confirm(report, prepared, started)
    if config.try_fixes:
        progress("trying the suggested fixes on copies of the model")
        report = _with_tried_fixes(report, prepared, result, pristine)
    if config.baseline is not None:
        from gradcheck_cli.judge.baseline import apply_baseline

        report = apply_baseline(report, config.baseline, config.baseline_orders)
    return report


def _pristine_for_fixes(prepared: Prepared) -> nn.Module | None:
    """--try-fixes with --steps: fixes start from the model as built, then train the same steps."""
    from gradcheck_cli.repair.measure import pristine_copy

    return pristine_copy(prepared.model)


def _with_tried_fixes(
    report: Report, prepared: Prepared, result: ProbeResult, pristine: nn.Module | None
) -> Report:
    """The findings after policy choose what is tried; each copy is judged by the same policy."""
    from gradcheck_cli.repair.measure import CopyMeasurer
    from gradcheck_cli.repair.runner import try_fixes

    tried = try_fixes(report.findings, result, CopyMeasurer(prepared, pristine))
    return dataclasses.replace(report, fixes=tried)
