"""A repository's own policy over the findings: per-rule severity overrides and ignores.

Applied to a finished Report (after diagnosis, before rendering), so rules stay unaware of it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from fnmatch import fnmatchcase
from pathlib import Path

from gradcheck_cli.judge.diagnose import layer_status
from gradcheck_cli.records.findings import Finding, Ignored, LayerStatus, Severity
from gradcheck_cli.records.report import LayerRow, Report, summarize
from gradcheck_cli.records.stats import SourceRef

IgnoreRule = tuple[str, tuple[str, ...]]


def apply_policy(
    report: Report,
    severity: Mapping[str, str],
    ignore: Sequence[IgnoreRule],
    select: Sequence[str] = (),
    inline: bool = True,
) -> Report:
    """Severity overrides, then suppression: `rules: ID: off`, `select`, `ignore`, and inline
    `# gradcheck: ignore[ID]` comments on the line a finding points at. Suppressed findings
    are kept in `Report.ignored` with the reason, and counted in the summary."""
    comments = inline_ignores(report) if inline else {}
    if not severity and not ignore and not select and not comments:
        return report
    kept: list[Finding] = []
    ignored: list[Ignored] = list(report.ignored)
    for finding in report.findings:
        left, dropped = _apply_one(finding, severity, ignore, select, comments)
        ignored += dropped
        if left is not None:
            kept.append(left)
    kept.sort(key=lambda f: -f.severity.rank)
    findings = tuple(kept)
    return replace(
        report,
        findings=findings,
        ignored=tuple(ignored),
        layers=_restatus(report.layers, kept),
        summary=summarize(findings, len(ignored)),
    )


def policy_findings(
    findings: tuple[Finding, ...],
    severity: Mapping[str, str],
    ignore: Sequence[IgnoreRule],
    select: Sequence[str] = (),
) -> tuple[Finding, ...]:
    """The findings the policy keeps, at the severity it gives them, worst first."""
    if not severity and not ignore and not select:
        return findings
    out = [_apply_one(finding, severity, ignore, select, {})[0] for finding in findings]
    kept = [f for f in out if f is not None]
    kept.sort(key=lambda f: -f.severity.rank)
    return tuple(kept)


def _apply_one(
    finding: Finding,
    severity: Mapping[str, str],
    ignore: Sequence[IgnoreRule],
    select: Sequence[str],
    comments: Mapping[str, tuple[frozenset[str] | None, str]],
) -> tuple[Finding | None, list[Ignored]]:
    level = severity.get(finding.id)
    if level == "off":
        return None, [Ignored(finding=finding, reason=f"rules: {finding.id}: off")]
    if level is not None:
        finding = replace(finding, severity=Severity(level))
    if select and finding.id not in select:
        return None, [Ignored(finding=finding, reason=f"not in select ({', '.join(select)})")]
    dropped: list[Ignored] = []
    for rule_id, globs in ignore:
        if rule_id != finding.id:
            continue
        if not globs:
            return None, [*dropped, Ignored(finding=finding, reason=f"ignore: {rule_id}")]
        hit = tuple(name for name in finding.layers if any(fnmatchcase(name, g) for g in globs))
        if hit:
            reason = f"ignore: {rule_id} on {', '.join(globs)}"
            kept_finding, part = _split(finding, hit, reason)
            dropped.append(part)
            if kept_finding is None:
                return None, dropped
            finding = kept_finding
    return _apply_inline(finding, comments, dropped)


def _apply_inline(
    finding: Finding, comments: Mapping[str, tuple[frozenset[str] | None, str]], dropped: list[Ignored]
) -> tuple[Finding | None, list[Ignored]]:
    by_reason: dict[str, list[str]] = {}
    for name in finding.layers or (f"<{finding.id}>",):
        ids, where = comments.get(name, (frozenset(), ""))
        if ids is None or finding.id in ids:
            by_reason.setdefault(f"# gradcheck: ignore at {where}", []).append(name)
    current: Finding | None = finding
    for reason, names in by_reason.items():
        if current is None:
            break
        current, part = _split(current, tuple(n for n in names if not n.startswith("<")), reason)
        dropped.append(part)
    return current, dropped


def _split(finding: Finding, names: tuple[str, ...], reason: str) -> tuple[Finding | None, Ignored]:
    """The finding without `names` (None when nothing is left) and the ignored part."""
    rest = tuple(n for n in finding.layers if n not in names)
    if not names or not rest:
        return None, Ignored(finding=finding, reason=reason)
    return replace(finding, layers=rest), Ignored(finding=replace(finding, layers=names), reason=reason)


_INLINE = re.compile(r"#\s*gradcheck:\s*ignore(?:\[([^\]]*)\])?")


def inline_ignores(report: Report) -> dict[str, tuple[frozenset[str] | None, str]]:
    """Layer name -> (finding ids, or None for all; file:line) for each layer whose defining line
    in the user's code carries `# gradcheck: ignore[ID, ...]` (or a bare `# gradcheck: ignore`).
    A finding without layers is looked up by the line its first suggestion points at."""
    out: dict[str, tuple[frozenset[str] | None, str]] = {}
    refs = [(row.stats.name, row.stats.source) for row in report.layers]
    refs += [(f"<{f.id}>", _suggestion_ref(f)) for f in report.findings if not f.layers]
    files: dict[str, tuple[str, ...]] = {}
    for name, ref in refs:
        if ref is None or ref.line is None:
            continue
        if ref.file not in files:
            files[ref.file] = _lines(ref.file)
        lines = files[ref.file]
        match = _INLINE.search(lines[ref.line - 1] if 0 < ref.line <= len(lines) else "")
        if match:
            ids = None if match.group(1) is None else frozenset(i.strip() for i in match.group(1).split(","))
            out[name] = (ids, f"{ref.file}:{ref.line}")
    return out


def _suggestion_ref(finding: Finding) -> SourceRef | None:
    where = next((s.where for s in finding.suggestions if s.where), None)
    file, _, line = (where or "").rpartition(":")
    return SourceRef(file=file, line=int(line)) if file and line.isdigit() else None


def _lines(file: str) -> tuple[str, ...]:
    """The file as the report names it: relative to the working directory, or to the installed
    package for gradcheck's own files."""
    for path in (Path(file), Path(__file__).resolve().parents[2] / file):
        if path.is_file():
            try:
                return tuple(path.read_text(encoding="utf-8", errors="replace").splitlines())
            except OSError:
                return ()
    return ()


def _restatus(rows: tuple[LayerRow, ...], findings: list[Finding]) -> tuple[LayerRow, ...]:
    """Each layer's status again from the findings the policy kept (a layer whose only findings
    were ignored goes back to ok), by the one status function diagnosis uses."""
    status = layer_status([row.stats for row in rows], findings)
    return tuple(replace(row, status=status.get(row.stats.name, LayerStatus.OK)) for row in rows)
