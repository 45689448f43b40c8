"""No rendered word disagrees with its count ("1 errors", "1 layers get") and no role placeholder
(`layers.#`, a bare `#`) leaks into prose: every builtin, every fixture model, every format, and
the error messages of the models that cannot run."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from gradcheck_cli.config.analyze_config import build_config
from gradcheck_cli.load.zoo import ARCHITECTURES
from gradcheck_cli.render import render_reports

FIXTURES = Path(__file__).parent / "fixtures"
NOUNS = (
    "error|warning|info|layer|batch|step|order|activation|module|target|finding|decade|unit|"
    "parameter|tensor|rank|ignored finding|weight layer|suppression|key|candidate|time"
)
# "1 errors", "1 batches", "1 orders of magnitude", "1 ReLU activations have", "1 layers get"
DISAGREE = re.compile(rf"(?<![\d.,x×+-])\b1 (?:[A-Za-z/-]+ )?(?:{NOUNS})(?:e?s)\b")
PLACEHOLDER = re.compile(r"[\w)]\.#|(?<![\w&])# (?:layers|[A-Z]\w* layers)|\b#\.\w")
SMALL = {"depth": 4, "seq_len": 12}


def _prose(text: str) -> list[str]:
    """The sentences of a rendered report: everything but JSON evidence and SVG paths."""
    return [
        line for line in text.splitlines() if not line.lstrip().startswith(("evidence.", "<polyline", '"'))
    ]


def _check(label: str, text: str) -> None:
    for line in _prose(text):
        assert not DISAGREE.search(line), f"{label}: agreement: {line.strip()}"
        assert not PLACEHOLDER.search(line), f"{label}: role placeholder: {line.strip()}"


def _targets() -> list[tuple[str, dict[str, object]]]:
    builtins = [
        (f"builtin:{name}", {k: v for k, v in SMALL.items() if k in spec.options})
        for name, spec in ARCHITECTURES.items()
    ]
    files = [
        (str(p), {}) for folder in ("faults", "controls") for p in sorted((FIXTURES / folder).glob("*.py"))
    ]
    return builtins + files


@pytest.mark.parametrize(
    ("target", "arch_opts"), _targets(), ids=lambda v: Path(str(v)).stem if isinstance(v, str) else ""
)
def test_every_format_of_every_model_agrees_in_number(target: str, arch_opts: dict[str, object]) -> None:
    from gradcheck_cli.run.pipeline import analyze_target

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    config = build_config(target, {"batches": 1, "device": "cpu", "arch_opts": arch_opts}, {})
    report = analyze_target(config)
    for fmt in ("rich", "markdown", "junit", "html"):
        _check(f"{target} {fmt}", render_reports(fmt, [report], width=80))
    for finding in report.findings:
        _check(
            f"{target} {finding.id}", finding.message + "\n" + "\n".join(s.text for s in finding.suggestions)
        )


@pytest.mark.parametrize(
    "args",
    [
        ["analyze", str(FIXTURES / "wild" / "no_model.py")],
        ["analyze", str(FIXTURES / "wild" / "missing_dep.py")],
        ["analyze", str(FIXTURES / "wild" / "wrong_shape.py")],
        ["analyze", str(FIXTURES / "wild" / "resnet_cifar.py")],
        ["analyze", "builtin:sigmoid-mlp", "--batches", "0"],
        ["analyze", "builtin:nope"],
        ["explain", "vanishing"],
        ["compare", "missing.json", "missing.json"],
    ],
    ids=lambda a: "-".join(Path(x).stem for x in a[:2]),
)
def test_error_messages_agree_in_number(cli, args: list[str]) -> None:
    result = cli(*args)
    assert result.exit_code == 2, result
    _check(" ".join(args), result.stderr)


def test_the_checks_catch_what_the_issue_saw() -> None:
    for bad in ("ERROR 1 errors · 0 warnings", "1 layers get gradients", "1 batches", "1 orders of magnitude",
                "1 ReLU activations have most units dead", "the 17 earliest layers.# layers barely learn",
                "the 11 earliest # layers barely learn"):  # fmt: skip
        with pytest.raises(AssertionError):
            _check("seen", bad)
    _check("fine", "1 error · 2 warnings · 1 batch · 10x · 0.1 steps · x1 layers · 3 layers.0")
