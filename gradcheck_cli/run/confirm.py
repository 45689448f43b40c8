"""A verdict must survive the measurement: error findings confirmed on a second measurement.

Statistics of a batch of 2 are not statistics of the architecture: BatchNorm over pooled
(2, C, 1, 1) features normalises two values per channel, and a small model's gradients can be
1e4x its weights at 2x3x64x64 and ordinary at batch 8 or at its own 224 px. So before a finding
at error level is issued, the same model is measured again with what should not matter changed:
a batch of at least CONFIRM_BATCH, another seed, and the model's native input size when it
declares one. A finding that reappears (same id, error level) stays an error, its evidence saying
which confirmation ran; one that does not becomes an info line saying at which size it appears.
Only runs with an error finding pay for the second measurement; a trained state (--steps,
--weights, --versus) or inputs handed over as they are (analyze(batches=...)) are not re-run.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gradcheck_cli.config.analyze_config import AnalyzeConfig
from gradcheck_cli.config.specs import InputSpec
from gradcheck_cli.judge.diagnose import diagnose
from gradcheck_cli.judge.policy import apply_policy
from gradcheck_cli.load.target import LoadedModel
from gradcheck_cli.measure.collect import probe
from gradcheck_cli.measure.device import seed_everything
from gradcheck_cli.measure.formats import measure_formats
from gradcheck_cli.measure.passes import Prepared, StageRecords
from gradcheck_cli.measure.preparation import prepare
from gradcheck_cli.measure.underflow import measure_precision
from gradcheck_cli.records.findings import Finding, Severity
from gradcheck_cli.records.report import Report, build_report, summarize

CONFIRM_BATCH = 8
"""The smallest batch a confirmation runs at."""
CONFIRM_BATCHES = 2
"""Batches of the second measurement (at a batch of 8 or more, two already agree)."""
NATIVE_LIMIT = 512
"""A declared native image side above this is not used (a CPU run would take minutes)."""


def needs_confirmation(report: Report, config: AnalyzeConfig, given_batches: bool) -> bool:
    if given_batches or config.steps or config.weights is not None or config.versus is not None:
        return False
    return any(f.severity is Severity.ERROR for f in report.findings)


def confirm(report: Report, session: Prepared, started: float) -> Report:
    """`report` with each error finding confirmed on the second measurement, or made an info line."""
    config, what = confirmation_config(session)
    seed_everything(config.seed)
    second = prepare(config, session.loaded, progress=session.progress)
    # float16: the underflow is measured there, as in the first pass
    records = StageRecords(
        fp16_underflow=measure_precision(second) if config.dtype == "float16" else None,
        precision=measure_formats(second, config.precision) if config.precision else None,
    )
    result = probe(second, started, records)
    diagnosis = diagnose(result, config.thresholds)
    again = apply_policy(
        build_report(config.target.raw, result, diagnosis.findings, diagnosis.layer_status),
        config.severity,
        config.ignore,
        config.select,
    )
    reproduced = {f.id for f in again.findings if f.severity is Severity.ERROR}
    first = _size_text(session)
    findings = tuple(
        _judged(f, f.id in reproduced, what, first) if f.severity is Severity.ERROR else f
        for f in report.findings
    )
    findings = tuple(sorted(findings, key=lambda f: -f.severity.rank))
    return dataclasses.replace(report, findings=findings, summary=summarize(findings, len(report.ignored)))


def confirmation_config(session: Prepared) -> tuple[AnalyzeConfig, dict[str, Any]]:
    """The config of the second measurement, and what it changed (for the evidence)."""
    config, plan = session.config, session.plan
    seed = config.seed + 1
    config = dataclasses.replace(config, batches=min(config.batches, CONFIRM_BATCHES))
    what: dict[str, Any] = {"seed": seed}
    if not plan.specs:  # sample_batch(): its size is fixed there, only the random draws change
        what["batch_size"] = None
        what["note"] = f"the batch comes from {plan.origin}: its size is fixed there, another seed only"
        return dataclasses.replace(config, seed=seed), what
    size = max(CONFIRM_BATCH, plan.batch_size)
    native = native_size(session.loaded)
    specs = tuple(
        _resized(spec, plan.batch_size, size, native if i == 0 else None) for i, spec in enumerate(plan.specs)
    )
    what["batch_size"] = size
    what["inputs"] = [str(spec) for spec in specs]
    if native is not None and specs[0].shape[-2:] == native:
        what["native_size"] = list(native)
    return dataclasses.replace(config, seed=seed, inputs=specs, batch_size=size), what


def native_size(loaded: LoadedModel) -> tuple[int, int] | None:
    """The image size a model declares (`default_cfg['input_size']`, `img_size`, `image_size`)."""
    model = loaded.module
    for attr in ("pretrained_cfg", "default_cfg"):
        cfg = getattr(model, attr, None)
        size = cfg.get("input_size") if isinstance(cfg, dict) else None
        if isinstance(size, (tuple, list)) and len(size) == 3:
            return _side(size[1], size[2])
    for attr in ("img_size", "image_size"):
        size = getattr(model, attr, None)
        if isinstance(size, int):
            return _side(size, size)
        if isinstance(size, (tuple, list)) and len(size) == 2:
            return _side(size[0], size[1])
    return None


def _side(h: Any, w: Any) -> tuple[int, int] | None:
    if isinstance(h, int) and isinstance(w, int) and 0 < h <= NATIVE_LIMIT and 0 < w <= NATIVE_LIMIT:
        return h, w
    return None


def _resized(spec: InputSpec, old: int, new: int, native: tuple[int, int] | None) -> InputSpec:
    shape = list(spec.shape)
    if shape and shape[0] == old:
        shape[0] = new
    elif len(shape) > 1 and shape[1] == old:  # sequence-first
        shape[1] = new
    if native is not None and len(shape) == 4 and spec.kind != "int":
        shape[2:] = native
    return dataclasses.replace(spec, shape=tuple(shape))


def _size_text(session: Prepared) -> str:
    plan = session.plan
    if not plan.specs:
        return f"the batches of {plan.origin} (seed {session.config.seed})"
    shapes = ", ".join("x".join(map(str, spec.shape)) for spec in plan.specs)
    return f"batch {plan.batch_size} ({shapes}, seed {session.config.seed})"


def _judged(finding: Finding, reproduced: bool, what: dict[str, Any], first: str) -> Finding:
    """Evidence keys `confirmed` and `confirmation_*` say which second measurement ran."""
    evidence = {
        **finding.evidence,
        "confirmed": reproduced,
        **{f"confirmation_{k}": v for k, v in what.items()},
    }
    if reproduced:
        return dataclasses.replace(finding, evidence=evidence)
    second = f"batch {what['batch_size']}" if what.get("batch_size") else "another seed"
    if "native_size" in what:
        second += f" at the model's native {'x'.join(map(str, what['native_size']))}"
    message = (
        f"Not confirmed: at {first} {finding.message[:1].lower()}{finding.message[1:]} "
        f"It does not appear at {second} (seed {what['seed']}): a statistic of the measurement size, "
        "not of the architecture."
    )
    return dataclasses.replace(
        finding, severity=Severity.INFO, message=message, evidence=evidence, suggestions=()
    )
