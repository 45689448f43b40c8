"""`gradcheck scale` reports: a ScaleReport as terminal text, JSON (`gradcheck.scale/1`, the
contract's `scale` section) or Markdown; HTML with a log-log chart is `render/scale_html.py`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from gradcheck_cli.judge.scale_expectations import NAMES, band_text
from gradcheck_cli.records.findings import Finding
from gradcheck_cli.records.scaling import HEADLINE_STEP, QUANTITIES, ModuleScaling, ScaleReport
from gradcheck_cli.records.text import count
from gradcheck_cli.render.escape import md_code, md_text, visible
from gradcheck_cli.render.json import _clean, _finding

HEADERS = ("module", "role", "fan-in", "fan-out", "forward", "backward", "update", "status")
EXPLANATION = (
    "exponent e of RMS ~ width^e: forward = the module's output and backward = the gradient at it, "
    "at init (t = 1); update = its output's change after one step (t = 2); [expected]"
)


def _exp(value: float | None) -> str:
    return "—" if value is None else f"{value:+.2f}"


def _cell(module: ModuleScaling, quantity: str) -> str:
    value = _exp(getattr(module, quantity))
    band = module.expected.get(quantity)
    return value if band is None else f"{value} [{band_text(band)}]"


def _rows(report: ScaleReport) -> list[tuple[str, ...]]:
    return [
        (m.name, m.role, m.fan_in, m.fan_out, *(_cell(m, q) for q in QUANTITIES), m.status)
        for m in report.modules
    ]


def _counts(report: ScaleReport) -> str:
    s = report.summary
    return f"{count(s.errors, 'error')}, {count(s.warnings, 'warning')}"


def setup_line(report: ScaleReport) -> str:
    widths = ",".join(str(w) for w in report.widths)
    return (
        f"{report.key}={widths} · {NAMES[report.parametrization]} · {count(report.seeds, 'seed')} · "
        f"t = 1..{report.steps} · optimizer: {report.optimizer} · {report.device} · {report.seconds:.1f} s"
    )


def render_text(report: ScaleReport, width: int = 100) -> str:
    rows = [HEADERS, *_rows(report)]
    sizes = [max(len(visible(r[i])) for r in rows) for i in range(len(HEADERS))]
    lines = [
        f"gradcheck scale {visible(report.target)}: {report.summary.status} ({_counts(report)})",
        setup_line(report),
        EXPLANATION,
        "",
    ]
    lines += ["  ".join(visible(c).ljust(sizes[i]) for i, c in enumerate(row)).rstrip() for row in rows]
    roles = " · ".join(f"{r.role} {r.modules} {r.status}" for r in report.roles)
    lines += ["", f"roles: {roles}", ""]
    for finding in report.findings:
        lines.append(f"{finding.severity.value} {finding.id}: {visible(finding.message)}")
        lines += [f"  fix ({s.fix}): {visible(s.text)}" for s in finding.suggestions]
    if not report.findings:
        lines.append(f"every module scales as {NAMES[report.parametrization]} predicts")
    return "\n".join(lines) + "\n"


def _module(m: ModuleScaling) -> dict[str, Any]:
    return {
        "name": m.name,
        "role": m.role,
        "type": m.kind,
        "fan_in": m.fan_in,
        "fan_out": m.fan_out,
        "forward": m.forward,
        "backward": m.backward,
        "update": m.update,
        "spread": dict(m.spread),
        "expected": {q: list(b) for q, b in m.expected.items()},
        "status": m.status,
        "by_step": {q: list(v) for q, v in m.by_step.items()},
        "rms": {q: list(v) for q, v in m.rms.items()},
    }


def to_document(report: ScaleReport) -> dict[str, Any]:
    return {
        "schema": report.schema,
        "tool": {"name": "gradcheck", "version": report.tool_version},
        "target": report.target,
        "scale": {
            "parametrization": report.parametrization,
            "key": report.key,
            "widths": list(report.widths),
            "seeds": report.seeds,
            "steps": report.steps,
            "headline_step": dict(HEADLINE_STEP),
            "optimizer": report.optimizer,
            "device": report.device,
            "tolerance": report.tolerance,
            "seconds": report.seconds,
            "modules": [_module(m) for m in report.modules],
            "roles": [
                {
                    "role": r.role,
                    "modules": r.modules,
                    "forward": r.forward,
                    "backward": r.backward,
                    "update": r.update,
                    "expected": {q: list(b) for q, b in r.expected.items()},
                    "status": r.status,
                }
                for r in report.roles
            ],
        },
        "findings": [_finding(f) for f in report.findings],
        "summary": {
            "status": report.summary.status,
            "errors": report.summary.errors,
            "warnings": report.summary.warnings,
            "infos": report.summary.infos,
        },
    }


def render_json(report: ScaleReport, width: int = 100) -> str:
    return json.dumps(_clean(to_document(report)), indent=2, allow_nan=False) + "\n"


def _md_finding(finding: Finding) -> str:
    return f"- **{finding.severity.value}** `{finding.id}`: {md_text(finding.message)}"


def render_markdown(report: ScaleReport, width: int = 100) -> str:
    lines = [
        f"## gradcheck scale {md_code(report.target)}: {report.summary.status} ({_counts(report)})",
        "",
        md_text(setup_line(report)),
        "",
        md_text(EXPLANATION),
        "",
        "| " + " | ".join(HEADERS) + " |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in _rows(report):
        cells = [md_code(row[0]), *(md_text(c).replace("|", "\\|") for c in row[1:])]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *(_md_finding(f) for f in report.findings)]
    if not report.findings:
        lines.append(f"Every module scales as {NAMES[report.parametrization]} predicts.")
    return "\n".join(lines) + "\n"


def _html(report: ScaleReport, width: int = 100) -> str:
    from gradcheck_cli.render.scale_html import render_html

    return render_html(report, render_text(report, width))


SCALE_RENDERERS: dict[str, Callable[[ScaleReport, int], str]] = {
    "rich": render_text,
    "json": render_json,
    "markdown": render_markdown,
    "html": _html,
}
"""By records.formats.SCALE_FORMATS name."""
