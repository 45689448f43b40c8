"""Baselines: compare a run with a saved JSON report, so CI fails on regressions only.

A regression is a finding id the baseline did not have, or a layer whose gradient/weight ratio
fell by more than `orders` orders of magnitude (or rose that much into a bad status). Findings the
baseline already had are accepted: they stay in the report at info severity. Measured numbers
wobble between seeds by a fraction of an order, far below the default limit of one order.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from gradcheck_cli.records.comparison import BaselineComparison, Comparison, LayerChange
from gradcheck_cli.records.errors import ConfigError
from gradcheck_cli.records.files import check_regular, check_size, not_regular
from gradcheck_cli.records.findings import Finding, Severity
from gradcheck_cli.records.report import SCHEMA, Report, summarize

REGRESSION_ID = "baseline-regression"


def load_document(path: Path, target: str | None = None) -> dict[str, Any]:
    """A gradcheck.report/1 document; from a multi-target file, the one for `target` (never
    silently another one: a missing or unnamed target is an error that lists them)."""
    docs = load_documents(path)
    if len(docs) == 1 and target is None:
        return next(iter(docs.values()))
    if target in docs:
        return docs[target]
    if len(docs) == 1 and not _is_multi(path):
        return next(iter(docs.values()))
    listed = ", ".join(docs)
    raise ConfigError(
        f"{path} holds reports of {len(docs)} targets ({listed})"
        + (f" and none for {target!r}" if target else ""),
        "name one with --target TARGET, e.g. --target " + next(iter(docs)),
    )


def _is_multi(path: Path) -> bool:
    if not_regular(path):
        return False
    try:
        return isinstance(json.loads(path.read_text()).get("reports"), list)
    except (OSError, ValueError, AttributeError):
        return False


def load_documents(path: Path) -> dict[str, dict[str, Any]]:
    """Every gradcheck.report/1 document in a file, by target (one for a single-target file)."""
    check_regular(path, "baseline", ConfigError, hint="name the JSON report file")
    check_size(path, "baseline", ConfigError)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"baseline {path} not found", "save one with --format json --output FILE") from None
    except IsADirectoryError:
        raise ConfigError(f"baseline {path} is a folder", "name the JSON report file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"baseline {path} is not UTF-8 text", "save one with --format json") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"baseline {path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    except OSError as exc:  # a folder, a permission, a device
        raise ConfigError(
            f"cannot read baseline {path}: {exc.strerror or exc}", "name a JSON report file"
        ) from None
    docs = doc["reports"] if isinstance(doc, dict) and isinstance(doc.get("reports"), list) else [doc]
    for item in docs:
        if not isinstance(item, dict) or item.get("schema") != SCHEMA:
            raise ConfigError(f"baseline {path} is not a {SCHEMA} report", "save one with --format json")
        _check_shape(item, path)
    return {str(item.get("target")): item for item in docs}


def _check_shape(doc: dict[str, Any], path: Path) -> None:
    """The parts a comparison reads have the contract's types (a hand-edited file may not)."""
    layers, findings = doc.get("layers", []), doc.get("findings", [])
    problem = None
    if not isinstance(layers, list) or not all(
        isinstance(layer, dict)
        and isinstance(layer.get("name"), str)
        and _is_ratio(layer.get("grad_weight_ratio"))
        for layer in layers
    ):
        problem = "'layers' must be a list of {name, grad_weight_ratio, ...} objects"
    elif not isinstance(findings, list) or not all(
        isinstance(f, dict) and isinstance(f.get("id"), str) for f in findings
    ):
        problem = "'findings' must be a list of {id, ...} objects"
    if problem is not None:
        raise ConfigError(
            f"baseline {path}: {problem}", "save the baseline with --format json; do not edit it"
        )


def _is_ratio(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def compare_reports(
    old: Path, new: Path, orders: float, target: str | None
) -> tuple[list[tuple[str, Comparison]], list[str]]:
    """(target, comparison) for `target`, or for every target both files hold; and the targets
    only one of them holds."""
    if target is not None:
        return [
            (target, compare_documents(load_document(old, target), load_document(new, target), orders))
        ], []
    old_docs, new_docs = load_documents(old), load_documents(new)
    if len(old_docs) == 1 and len(new_docs) == 1:  # two single reports: compare them, whatever their names
        (name, before), (_, after) = next(iter(old_docs.items())), next(iter(new_docs.items()))
        return [(name, compare_documents(before, after, orders))], []
    both = [name for name in new_docs if name in old_docs]
    if not both:
        raise ConfigError(
            f"{old} and {new} share no target", f"targets: {', '.join(old_docs)} / {', '.join(new_docs)}"
        )
    unmatched = [name for name in (*old_docs, *new_docs) if name not in both]
    return [(name, compare_documents(old_docs[name], new_docs[name], orders)) for name in both], unmatched


def compare_documents(old: dict[str, Any], new: dict[str, Any], orders: float = 1.0) -> Comparison:
    old_layers = {layer["name"]: layer for layer in old.get("layers", [])}
    new_layers = {layer["name"]: layer for layer in new.get("layers", [])}
    old_ids, new_ids = _finding_ids(old), _finding_ids(new)
    return Comparison(
        layers=tuple(
            _layer_change(old_layers[name], layer, orders)
            for name, layer in new_layers.items()
            if name in old_layers
        ),
        new_findings=tuple(i for i in new_ids if i not in old_ids),
        resolved_findings=tuple(i for i in old_ids if i not in new_ids),
        kept_findings=tuple(i for i in new_ids if i in old_ids),
        added_layers=tuple(name for name in new_layers if name not in old_layers),
        removed_layers=tuple(name for name in old_layers if name not in new_layers),
        orders_limit=orders,
    )


def _finding_ids(doc: dict[str, Any]) -> list[str]:
    ids = [f["id"] for f in doc.get("findings", []) if f.get("id") != REGRESSION_ID]
    return list(dict.fromkeys(ids))


def _layer_change(old: dict[str, Any], new: dict[str, Any], limit: float) -> LayerChange:
    before, after = old.get("grad_weight_ratio"), new.get("grad_weight_ratio")
    orders: float | None = None
    if isinstance(before, (int, float)) and before > 0:
        orders = math.log10(after / before) if isinstance(after, (int, float)) and after > 0 else -math.inf
    new_status = str(new.get("status", "ok"))
    # Falling is always worse; rising is worse only when it lands the layer in a bad status
    # (rising out of a vanishing status is the fix working).
    regressed = orders is not None and (orders < -limit or (orders > limit and new_status != "ok"))
    return LayerChange(
        name=str(new["name"]),
        old_ratio=before,
        new_ratio=after,
        orders=orders,
        old_status=str(old.get("status", "ok")),
        new_status=new_status,
        regressed=regressed,
    )


def apply_baseline(report: Report, path: Path, orders: float) -> Report:
    """Accept the baseline's findings (info), add one error finding listing the regressions."""
    comparison = compare_documents(load_document(path, report.target), comparable(report), orders)
    findings = [_accepted(f) if f.id in comparison.kept_findings else f for f in report.findings]
    if comparison.regressed:
        findings.insert(0, regression_finding(comparison, path))
    return replace(
        report,
        findings=tuple(findings),
        summary=summarize(tuple(findings)),
        baseline=BaselineComparison(file=str(path), comparison=comparison),
    )


def comparable(report: Report) -> dict[str, Any]:
    """The parts of a report a comparison reads, in the saved document's shape (NaN as None)."""
    return {
        "layers": [
            {
                "name": row.stats.name,
                "grad_weight_ratio": _finite(row.stats.grad_weight_ratio),
                "status": row.status.value,
            }
            for row in report.layers
        ],
        "findings": [{"id": f.id} for f in report.findings],
    }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _accepted(finding: Finding) -> Finding:
    return replace(finding, severity=Severity.INFO, message=f"(in baseline) {finding.message}")


def regression_finding(comparison: Comparison, path: Path) -> Finding:
    worse = comparison.regressed_layers
    parts = [f"new finding {i}" for i in comparison.new_findings]
    parts += [f"{c.name} gradient ratio {_orders_text(c.orders)}" for c in worse[:3]]
    if len(worse) > 3:
        parts.append(f"{len(worse) - 3} more layers")
    return Finding(
        id=REGRESSION_ID,
        severity=Severity.ERROR,
        layers=tuple(c.name for c in worse),
        message=f"regressed since the baseline {path.name}: {'; '.join(parts)}.",
        evidence={
            "baseline": str(path),
            "new_findings": list(comparison.new_findings),
            "orders_limit": comparison.orders_limit,
            "worst_orders": min((c.orders for c in worse if c.orders is not None), default=None),
        },
    )


def _orders_text(orders: float | None) -> str:
    if orders is None:
        return "not comparable"
    if math.isinf(orders):
        return "fell to zero"
    return f"{'fell' if orders < 0 else 'rose'} {abs(orders):.1f} orders"
