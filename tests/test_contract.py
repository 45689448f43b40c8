"""The contract's finding ids, rule documentation and formats are complete."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

from gradcheck_cli.judge.rules import all_rules, every_rule, get_rule
from gradcheck_cli.judge.rules.base import DOC_SECTIONS
from gradcheck_cli.records.findings import FixId, LayerStatus
from gradcheck_cli.render import Format

CONTRACT = Path(__file__).resolve().parents[2] / "shared" / "spec" / "CONTRACT.md"
CONTRACT_IDS = {
    "vanishing-gradients",
    "exploding-gradients",
    "vanishing-through-time",
    "exploding-through-time",
    "dead-units",
    "saturated-activations",
    "nonfinite-gradients",
    "no-gradient",
    "fp16-underflow",
}


def test_contract_ids_match_the_spec_file_when_present() -> None:
    if CONTRACT.exists():
        text = CONTRACT.read_text()
        ids = set(re.findall(r"^\| `([a-z0-9-]+)` \|", text, flags=re.M))
        assert ids >= CONTRACT_IDS


def test_every_contract_id_has_a_rule() -> None:
    missing = {i for i in CONTRACT_IDS if get_rule(i) is None}
    assert not missing


def test_every_rule_is_documented_in_all_sections() -> None:
    for spec in every_rule():
        for section in DOC_SECTIONS:
            assert f"## {section}" in spec.doc, (spec.id, section)


def test_every_fix_is_a_contract_fix_id() -> None:
    valid = set(get_args(FixId))
    for spec in every_rule():
        assert set(spec.fixes) <= valid


def test_statuses_match_the_contract() -> None:
    assert {s.value for s in LayerStatus} == {
        "ok",
        "vanishing",
        "exploding",
        "dead",
        "saturated",
        "nonfinite",
        "no-grad",
        "frozen",
        "gated",
        "not-measured",
    }


def test_formats_match_the_contract() -> None:
    assert {f.value for f in Format} == {"rich", "json", "markdown", "junit", "html"}


def test_duplicate_rule_ids_are_refused() -> None:
    import pytest

    from gradcheck_cli.judge.rules.base import rule
    from gradcheck_cli.judge.rules.vanishing_gradients import VanishingLimits

    with pytest.raises(RuntimeError, match="duplicate"):
        rule(id="vanishing-gradients", severity=all_rules()[0].severity, fixes=(), limits=VanishingLimits)(
            lambda probe, limits: iter(())
        )
