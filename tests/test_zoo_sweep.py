"""The architecture sweep (benchmarks/zoo_sweep.py): a representative subset at batch 2 in the default
suite, the whole sweep against docs/zoo-sweep.md under -m slow."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = ROOT / "tests" / "fixtures" / "families"


def load_sweep():
    spec = importlib.util.spec_from_file_location("zoo_sweep", ROOT / "benchmarks" / "zoo_sweep.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["zoo_sweep"] = module
    spec.loader.exec_module(module)
    return module


sweep = load_sweep()


def test_every_family_file_says_what_it_is() -> None:
    described = {f.path.stem for f in sweep.discover() if f.path.parent == FAMILIES}
    assert described == {p.stem for p in FAMILIES.glob("*.py")}
    for fixture in sweep.discover():
        assert fixture.pattern and (fixture.inputs or fixture.path.parent != FAMILIES)
        assert (
            fixture.expect == sweep.HEALTHY
            or fixture.path.stem.startswith("broken_")
            or "patterns" in str(fixture.path)
        )


def test_batched_specs() -> None:
    assert sweep.batched("3x32x32", 16) == "16x3x32x32"
    assert sweep.batched("int:32:1000", 2) == "int:2x32:1000"
    assert sweep.batched("float:784:0..1", 4) == "float:4x784:0..1"


@pytest.mark.parametrize(
    "stem",
    ["resnet", "googlenet", "gpt", "t5", "broken_sigmoid_stack", "broken_vanilla_rnn"],
)
def test_representative_fixtures_at_batch_2(cli, stem: str) -> None:
    """The sweep's own command, run in-process: healthy exits 0, a broken twin exits 1 with its id."""
    (fixture,) = sweep.discover([stem])
    result = cli(*sweep.command(fixture, 2))
    outcome = sweep.outcome_of(fixture, 2, result.exit_code, result.stdout, result.stderr, 0.0)
    assert outcome.passed, (outcome, result.stderr[-600:])


def test_the_document_covers_every_fixture_at_both_batch_sizes() -> None:
    text = sweep.DOC.read_text()
    for fixture in sweep.discover():
        for batch in sweep.BATCH_SIZES:
            shown = f"{batch}" if fixture.inputs else f"{batch}*"
            assert f"| `{fixture.name}` | {fixture.pattern} | {fixture.expect} | {shown} |" in text, (
                fixture.name
            )


def test_outcome_of_a_run_that_could_not_start() -> None:
    (fixture,) = sweep.discover(["resnet"])
    outcome = sweep.outcome_of(fixture, 2, 2, "", "error: the model's forward raised\nhint: x", 1.0)
    assert not outcome.passed and outcome.problem == "error: the model's forward raised"
    assert "exit 2: error: the model's forward raised" in sweep.table([outcome])


@pytest.mark.slow
def test_full_sweep_matches_the_document() -> None:
    """Every fixture at batch 2 and 16 through the real CLI, compared with docs/zoo-sweep.md."""
    code = sweep.main(["--check", "--jobs", "2"])
    assert code != 2, "docs/zoo-sweep.md is stale: run benchmarks/zoo_sweep.py --write"
    assert code == 0 or "**FAIL**" in sweep.DOC.read_text()  # a failing fixture is shown as failing
