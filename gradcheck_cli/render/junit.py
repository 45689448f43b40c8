"""--format junit, as pytest writes it: one test suite per target, one test case per rule; a
failure per finding at or above --fail-on, skipped (with the reason) for a rule that could not
apply to the run or whose finding was ignored, passed otherwise."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import ClassVar

from gradcheck_cli.records.findings import FailOn, Finding
from gradcheck_cli.records.outcome import TargetFailure
from gradcheck_cli.records.report import Report
from gradcheck_cli.render.escape import xml_safe


def _rule_ids(report: Report) -> list[str]:
    """Every registered rule (a case each), then ids only findings carry."""
    from gradcheck_cli.judge.rules import all_rules

    ids = [spec.id for spec in all_rules()]
    extra = [f.id for f in (*report.findings, *(i.finding for i in report.ignored)) if f.id not in ids]
    return ids + list(dict.fromkeys(extra))


def _not_applicable(report: Report, rule_id: str) -> str | None:
    """Why the rule could not fire on this run (declared on the rule: `@rule(applies_when=...)`)."""
    from gradcheck_cli.judge.rules import get_rule

    spec = get_rule(rule_id)
    return spec.not_applicable(report) if spec is not None else None


def _fails(finding: Finding, fail_on: str) -> bool:
    return FailOn(fail_on).fails(finding.severity)


def _details(finding: Finding) -> str:
    lines = [finding.message, f"layers: {', '.join(finding.layers) or '-'}"]
    lines += [f"evidence.{k}: {v}" for k, v in finding.evidence.items()]
    lines += [f"fix {s.fix}: {s.text}" + (f" ({s.where})" if s.where else "") for s in finding.suggestions]
    return "\n".join(lines)


def _testcase(suite: ET.Element, report: Report, rule_id: str, fail_on: str) -> tuple[int, int]:
    """One rule as pytest writes a test: failed, skipped (with the reason) or passed.
    Returns (failures, skipped)."""
    case = ET.SubElement(suite, "testcase", classname=f"gradcheck.{report.target}", name=rule_id)
    failures, notes = 0, []
    for finding in (f for f in report.findings if f.id == rule_id):
        if _fails(finding, fail_on):
            failure = ET.SubElement(
                case, "failure", type=finding.id, message=f"{finding.severity.value}: {finding.message}"
            )
            failure.text = _details(finding)
            failures += 1
        else:
            notes.append(f"{finding.severity.value} (below --fail-on {fail_on}): {_details(finding)}")
    ignored = [i for i in report.ignored if i.finding.id == rule_id]
    notes += [f"ignored ({i.reason}): {_details(i.finding)}" for i in ignored]
    skipped = 0
    if not failures and not any(f.id == rule_id for f in report.findings):
        reason = f"ignored: {ignored[0].reason}" if ignored else _not_applicable(report, rule_id)
        if reason:
            ET.SubElement(case, "skipped", type="gradcheck.skip", message=reason).text = reason
            skipped = 1
    if notes:
        ET.SubElement(case, "system-out").text = "\n\n".join(notes)
    return failures, skipped


def testsuite(report: Report, fail_on: str) -> ET.Element:
    suite = ET.Element("testsuite", name=report.target)
    properties = ET.SubElement(suite, "properties")
    for name, value in (("model", report.model.class_name), ("parameters", str(report.model.parameters)),
                        ("device", report.model.device), ("dtype", report.model.dtype),
                        ("seed", str(report.run.seed)), ("status", report.summary.status)):  # fmt: skip
        ET.SubElement(properties, "property", name=name, value=value)
    ids = _rule_ids(report)
    counts = [_testcase(suite, report, rule_id, fail_on) for rule_id in ids]
    suite.set("tests", str(len(ids)))
    suite.set("failures", str(sum(f for f, _ in counts)))
    suite.set("errors", "0")
    suite.set("skipped", str(sum(s for _, s in counts)))
    suite.set("time", f"{report.run.seconds:.3f}")
    return suite


def failure_suite(failure: TargetFailure) -> ET.Element:
    """A target that could not be analysed: one test case with an <error> (not a <failure>)."""
    suite = ET.Element("testsuite", name=failure.target, tests="1", failures="0", errors="1", skipped="0")
    case = ET.SubElement(suite, "testcase", classname=f"gradcheck.{failure.target}", name="analysis")
    error = ET.SubElement(case, "error", type="could-not-run", message=failure.message)
    error.text = "\n".join(
        [f"stage: {failure.stage}", failure.message, *([failure.hint] if failure.hint else [])]
    )
    return suite


def document(reports: Sequence[Report], fail_on: str, failures: Sequence[TargetFailure] = ()) -> str:
    root = ET.Element("testsuites", name="gradcheck")
    suites = [testsuite(r, fail_on) for r in reports] + [failure_suite(f) for f in failures]
    root.extend(suites)
    for key in ("tests", "failures", "errors", "skipped"):
        root.set(key, str(sum(int(s.get(key, "0")) for s in suites)))
    ET.indent(root)
    # Control characters from module names would make the file unparseable: shown escaped instead.
    return '<?xml version="1.0" encoding="utf-8"?>\n' + xml_safe(ET.tostring(root, encoding="unicode")) + "\n"


class JunitRenderer:
    format: ClassVar[str] = "junit"

    def __init__(self, fail_on: str = "error") -> None:
        self.fail_on = fail_on

    def render(self, report: Report) -> str:
        return document([report], self.fail_on)

    def render_many(self, reports: Sequence[Report], failures: Sequence[TargetFailure] = ()) -> str:
        return document(reports, self.fail_on, failures)
