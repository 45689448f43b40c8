"""A repository's own policy over the findings: per-rule severity overrides and ignores.

Applied to a finished Report (after diagnosis, before rendering), so rules stay unaware of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from fnmatch import fnmatchcase

from gradcheck_cli.diagnose import STATUS_PRIORITY
from gradcheck_cli.findings import Finding, LayerStatus, Severity
from gradcheck_cli.report import LayerRow, Report, summarize

IgnoreRule = tuple[str, tuple[str, ...]]


def apply_policy(report: Report, severity: Mapping[str, str], ignore: Sequence[IgnoreRule]) -> Report:
    if not severity and not ignore:
        return report
    findings = policy_findings(report.findings, severity, ignore)
    return replace(
        report,
        findings=findings,
        layers=_restatus(report.layers, list(findings)),
        summary=summarize(findings),
    )


def policy_findings(
    findings: tuple[Finding, ...], severity: Mapping[str, str], ignore: Sequence[IgnoreRule]
) -> tuple[Finding, ...]:
    """The findings the policy keeps, at the severity it gives them, worst first."""
    if not severity and not ignore:
        return findings
    kept = [f for f in (_apply_one(finding, severity, ignore) for finding in findings) if f is not None]
    kept.sort(key=lambda f: -f.severity.rank)
    return tuple(kept)


def _apply_one(finding: Finding, severity: Mapping[str, str], ignore: Sequence[IgnoreRule]) -> Finding | None:
    level = severity.get(finding.id)
    if level == "off":
        return None
    if level is not None:
        finding = replace(finding, severity=Severity(level))
    for rule_id, globs in ignore:
        if rule_id != finding.id:
            continue
        if not globs:
            return None
        layers = tuple(name for name in finding.layers if not any(fnmatchcase(name, g) for g in globs))
        if finding.layers and not layers:
            return None
        finding = replace(finding, layers=layers)
    return finding


def _restatus(rows: tuple[LayerRow, ...], findings: list[Finding]) -> tuple[LayerRow, ...]:
    """A layer whose only findings were ignored goes back to ok."""
    marks: dict[str, set[LayerStatus]] = {}
    for finding in findings:
        if finding.status is not None:
            for name in finding.layers:
                marks.setdefault(name, set()).add(finding.status)
    out = []
    for row in rows:
        if row.status in (LayerStatus.OK, LayerStatus.FROZEN) or row.status in marks.get(row.stats.name, ()):
            out.append(row)
            continue
        found = marks.get(row.stats.name, set())
        status = next((s for s in STATUS_PRIORITY if s in found), LayerStatus.OK)
        out.append(replace(row, status=status))
    return tuple(out)
