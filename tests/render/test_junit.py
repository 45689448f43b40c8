from __future__ import annotations

from pathlib import Path

import junitparser

from gradcheck_cli.judge.rules import all_rules
from gradcheck_cli.render import render_reports
from gradcheck_cli.render.junit import JunitRenderer


def _cases(xml_text: str, tmp_path: Path) -> list[junitparser.TestCase]:
    path = tmp_path / "report.xml"
    path.write_text(xml_text)
    xml = junitparser.JUnitXml.fromfile(str(path))
    return [case for suite in xml for case in suite]


def test_junit_golden(vanishing_report, golden) -> None:
    golden("report.xml", JunitRenderer(fail_on="error").render(vanishing_report))


def test_one_case_per_rule_and_a_failure_per_finding_at_fail_on(vanishing_report, tmp_path) -> None:
    cases = _cases(JunitRenderer(fail_on="error").render(vanishing_report), tmp_path)
    assert [c.name for c in cases] == [r.id for r in all_rules()]
    failed = {c.name: c.result for c in cases if c.is_failure}
    assert list(failed) == ["vanishing-gradients"]
    assert isinstance(failed["vanishing-gradients"][0], junitparser.Failure)
    assert "model.py:12" in failed["vanishing-gradients"][0].text


def test_fail_on_warning_fails_the_warning_too_and_never_fails_nothing(vanishing_report, tmp_path) -> None:
    warning = _cases(JunitRenderer(fail_on="warning").render(vanishing_report), tmp_path)
    never = _cases(JunitRenderer(fail_on="never").render(vanishing_report), tmp_path)
    assert sorted(c.name for c in warning if c.is_failure) == [
        "saturated-activations",
        "vanishing-gradients",
    ]
    assert not any(c.is_failure for c in never)


def test_several_targets_give_one_suite_each(vanishing_report, healthy_report, tmp_path) -> None:
    path = tmp_path / "r.xml"
    path.write_text(render_reports("junit", [vanishing_report, healthy_report]))
    suites = list(junitparser.JUnitXml.fromfile(str(path)))
    assert [s.name for s in suites] == ["model.py", "builtin:residual-mlp"]
    assert [s.failures for s in suites] == [1, 0]


def test_rules_that_could_not_apply_and_ignored_findings_are_skipped_with_the_reason(
    vanishing_report, tmp_path
) -> None:
    from gradcheck_cli.judge.policy import apply_policy

    report = apply_policy(vanishing_report, {"saturated-activations": "off"}, [])
    cases = {c.name: c for c in _cases(JunitRenderer(fail_on="warning").render(report), tmp_path)}
    skipped = {name: c.result[0].message for name, c in cases.items() if c.is_skipped}
    assert skipped["fp16-underflow"] == "a float32 run, not float16"
    assert skipped["saturated-activations"] == "ignored: rules: saturated-activations: off"
    assert "vanishing-through-time" in skipped and cases["vanishing-gradients"].is_failure
    assert cases["no-gradient"].is_passed


def test_applicability_is_declared_on_the_rules_and_junit_reads_it(vanishing_report, tmp_path) -> None:
    """The rules that need something of the run say so on themselves (`@rule(applies_when=...)`);
    the JUnit report skips exactly those whose condition does not hold, with the rule's reason."""
    from gradcheck_cli.judge.rules import every_rule

    conditional = {spec.id for spec in every_rule() if spec.applies_when is not None}
    assert {"fp16-underflow", "update-ratio", "dead-units", "vanishing-through-time"} <= conditional
    cases = _cases(JunitRenderer(fail_on="error").render(vanishing_report), tmp_path)
    skipped = {c.name: c.result[0].message for c in cases if c.is_skipped}
    expected = {
        spec.id: spec.not_applicable(vanishing_report)
        for spec in all_rules()
        if spec.not_applicable(vanishing_report) is not None
        and spec.id not in {f.id for f in vanishing_report.findings}
    }
    assert expected and set(expected) <= set(skipped)
    assert skipped["fp16-underflow"] == expected["fp16-underflow"] == "a float32 run, not float16"
