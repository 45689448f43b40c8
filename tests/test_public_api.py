"""The public face: what users import comes from `gradcheck_cli` itself, `import gradcheck_cli`
stays torch-free, and the rule "anything not in `gradcheck_cli.__all__` is internal" is stated
where users read it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import gradcheck_cli

ROOT = Path(__file__).resolve().parents[1]


def test_import_gradcheck_cli_is_torch_free_and_lists_the_public_names() -> None:
    code = (
        "import sys, gradcheck_cli; "
        "print(sorted(gradcheck_cli.__all__) == sorted(n for n in dir(gradcheck_cli) if n in gradcheck_cli.__all__)); "
        "print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["True", "False"], done.stderr


def test_every_public_name_resolves_to_what_users_use() -> None:
    from gradcheck_cli.monitor.integrations import lightning, transformers
    from gradcheck_cli.records.report import Report

    assert {"analyze", "GradientMonitor", "LightningCallback", "TransformersCallback"} <= set(
        gradcheck_cli.__all__
    )
    assert {"JsonLinesSink", "TensorBoardSink", "WandbSink", "Sink", "Report", "Finding"} <= set(
        gradcheck_cli.__all__
    )
    for name in gradcheck_cli.__all__:
        assert getattr(gradcheck_cli, name) is not None, name
    assert gradcheck_cli.LightningCallback is lightning.GradcheckCallback
    assert gradcheck_cli.TransformersCallback is transformers.GradcheckCallback
    assert gradcheck_cli.Report is Report and issubclass(gradcheck_cli.AnalysisReport, Report)
    assert callable(gradcheck_cli.analyze) and callable(gradcheck_cli.read_run_report)


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        gradcheck_cli.probe  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "probe" in str(exc)
    else:
        raise AssertionError("gradcheck_cli.probe should not exist")


def test_the_public_internal_rule_is_documented() -> None:
    rule = "not in `__all__` is internal"
    for doc in ("README.md", "docs/architecture.md"):
        text = re.sub(r"\s+", " ", (ROOT / doc).read_text().replace("*", ""))
        assert rule.lower() in text.lower(), doc
