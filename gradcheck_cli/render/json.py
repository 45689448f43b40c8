"""--format json: the contract's gradcheck.report/1 document, written field by field."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, ClassVar

from gradcheck_cli.records.comparison import BaselineComparison
from gradcheck_cli.records.findings import Finding
from gradcheck_cli.records.fixes import Measured, TriedFix
from gradcheck_cli.records.report import LayerRow, Report
from gradcheck_cli.records.stats import ThroughTime, TrainingHistory
from gradcheck_cli.render.headroom import headroom_section
from gradcheck_cli.render.precision import precision_section
from gradcheck_cli.render.trained_json import json_sections, training_extension


def _num(value: float | int | None) -> float | int | None:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _clean(value: Any) -> Any:
    """NaN/inf -> None, recursively, so json.dumps(allow_nan=False) only fails on real bugs."""
    if isinstance(value, float):
        return _num(value)
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _layer(row: LayerRow) -> dict[str, Any]:
    s = row.stats
    out: dict[str, Any] = {
        "name": s.name,
        "type": s.type,
        "index": s.index,
        "grad_norm": _num(s.grad_norm),
        "weight_norm": _num(s.weight_norm),
        "grad_weight_ratio": _num(s.grad_weight_ratio),
        "act_grad_rms": _num(s.act_grad_rms),
        "act_grad_norm": _num(s.act_grad_norm),
        "zero_grad_fraction": _num(s.zero_grad_fraction),
        "nonfinite": s.nonfinite,
        "status": row.status.value,
        "parameters": s.parameters,
        "calls": s.calls,
        "role": s.role,
    }
    if s.shared_with:
        out["shared_with"] = s.shared_with
    if s.gated_by is not None:
        out["gated_by"] = s.gated_by
        out["open_act_grad_norm"] = _num(s.open_act_grad_norm)
    if s.source:
        out["source"] = str(s.source)
    return out


def _finding(f: Finding) -> dict[str, Any]:
    return {
        "id": f.id,
        "severity": f.severity.value,
        "layers": list(f.layers),
        "message": f.message,
        "evidence": _clean(f.evidence),
        "suggestions": [{"fix": s.fix, "text": s.text, "where": s.where} for s in f.suggestions],
    }


def _through_time(tt: ThroughTime) -> dict[str, Any]:
    return {
        "module": tt.module,
        "type": tt.type,
        "steps": tt.steps,
        "per_step_factor": _num(tt.per_step_factor),
        "horizon": tt.horizon,
        "horizon_floor": tt.horizon_floor,
        "curve": [_num(v) for v in tt.curve],
    }


def to_document(report: Report) -> dict[str, Any]:
    m, r = report.model, report.run
    doc: dict[str, Any] = {
        "schema": report.schema,
        "tool": {"name": "gradcheck", "version": report.tool_version},
        "target": report.target,
        "model": {
            "class": m.class_name,
            "parameters": m.parameters,
            "trainable": m.trainable,
            "device": m.device,
            "dtype": m.dtype,
            "found_by": m.found_by,
            "init_args": _clean(m.init_args),
            **({"dtype_reason": m.dtype_reason} if m.dtype_reason else {}),
        },
        "run": {
            "batches": r.batches,
            "steps": r.steps,
            "seed": r.seed,
            "loss": r.loss,
            "loss_reason": r.loss_reason,
            "inputs": list(r.inputs),
            "input_origin": r.input_origin,
            "seconds": round(r.seconds, 3),
        },
        "layers": [_layer(row) for row in report.layers],
        "findings": [_finding(f) for f in report.findings],
        "summary": {
            "status": report.summary.status,
            "errors": report.summary.errors,
            "warnings": report.summary.warnings,
            "infos": report.summary.infos,
            "ignored": report.summary.ignored,
        },
    }
    if report.through_time:
        # The contract pins one object; the first recurrent module is the one shown.
        doc["through_time"] = _through_time(report.through_time[0])
    doc.update(_optional_sections(report))
    return doc


def _optional_sections(report: Report) -> dict[str, Any]:
    """The sections later stages add (--steps, --try-fixes, --baseline), in that order."""
    out: dict[str, Any] = {}
    if report.training is not None:
        out["training"] = _clean(training_section(report.training))
    if report.fixes is not None:
        out["fixes"] = _clean([tried_fix(t) for t in report.fixes])
    if report.baseline is not None:
        out["baseline"] = _clean(baseline_section(report.baseline))
    if report.lr_headroom is not None:
        out["lr_headroom"] = _clean(headroom_section(report.lr_headroom))
    out.update(json_sections(report))
    if report.precision is not None:
        out["precision"] = _clean(precision_section(report.precision))
    if report.ignored:
        out["ignored"] = [{**_finding(i.finding), "reason": i.reason} for i in report.ignored]
    return out


def training_section(history: TrainingHistory) -> dict[str, Any]:
    """The --steps history: loss and per-layer gradient norm at each step."""
    return {
        "optimizer": history.optimizer,
        "lr": history.lr,
        "loss": list(history.loss),
        "grad_norms": {name: list(values) for name, values in history.grad_norms.items()},
        **training_extension(history),
    }


def _measured(m: Measured | None) -> dict[str, Any] | None:
    if m is None:
        return None
    ratio = m.ratio if m.ratio is None or math.isfinite(m.ratio) else None
    return {"findings": list(m.findings), "ratio": ratio}


def tried_fix(tried: TriedFix) -> dict[str, Any]:
    """One entry of the contract's `fixes`."""
    out: dict[str, Any] = {
        "fix": tried.fix,
        "where": tried.where,
        "applied": tried.applied,
        "note": tried.note,
        "before": _measured(tried.before),
        "after": _measured(tried.after),
        "cleared": list(tried.cleared),
        "parameters_delta": tried.parameters_delta,
        "finding": tried.finding,
    }
    if tried.max_norm is not None:
        out["max_norm"] = tried.max_norm
    return out


def baseline_section(baseline: BaselineComparison) -> dict[str, Any]:
    comparison = baseline.comparison
    return {
        "file": baseline.file,
        "orders_limit": comparison.orders_limit,
        "regressed": comparison.regressed,
        "new_findings": list(comparison.new_findings),
        "resolved_findings": list(comparison.resolved_findings),
        "regressed_layers": [
            {
                "name": c.name,
                "orders": None if c.orders is None or math.isinf(c.orders) else round(c.orders, 2),
            }
            for c in comparison.regressed_layers
        ],
        "added_layers": list(comparison.added_layers),
        "removed_layers": list(comparison.removed_layers),
    }


class JsonRenderer:
    format: ClassVar[str] = "json"

    def render(self, report: Report) -> str:
        return json.dumps(to_document(report), indent=2, allow_nan=False) + "\n"
