"""`gradcheck scale`: exponents of RMS against width, each against the algebra of models built for it
(tests/fixtures/scaling/models.py), the verdicts under standard and muP, the JSON, exit codes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from gradcheck_cli.config.analyze_config import build_config
from gradcheck_cli.config.options import values_from_flags
from gradcheck_cli.config.scale_settings import scale_settings
from gradcheck_cli.judge.scaling import judge_scaling, slope
from gradcheck_cli.records import wire
from gradcheck_cli.records.scaling import ScaleReport

MODELS = Path(__file__).parent / "fixtures" / "scaling" / "models.py"
WIDTHS = "width=64,128,256,512"


def sweep(factory: str, parametrization: str = "standard", seeds: int = 2, steps: int = 2) -> ScaleReport:
    from gradcheck_cli.measure.scaling import measure_widths

    flags = values_from_flags({"inputs": ["32x16"], "optimizer": "adam"})
    config = build_config(f"{MODELS}:{factory}", flags, {})
    config = dataclasses.replace(config, scale=scale_settings(WIDTHS, parametrization, seeds, steps))
    return judge_scaling(measure_widths(config), parametrization)


def module(report: ScaleReport, name: str):  # type: ignore[no-untyped-def]
    return next(m for m in report.modules if m.name == name)


@pytest.fixture(scope="module")
def mup_report() -> ScaleReport:
    return sweep("mup", "mup")


def test_the_fit_is_the_log_log_slope() -> None:
    assert slope([64, 128, 256], [1.0, 2.0, 4.0]) == pytest.approx(1.0)
    assert slope([64, 256], [3.0, 1.5]) == pytest.approx(-0.5)
    assert slope([64, 128], [1.0, None]) is None and slope([64, 128], [0.0, 1.0]) is None


def test_a_fixed_init_std_grows_like_the_square_root_of_width() -> None:
    """std 0.02 on unit inputs: layer 2 sums `width` terms, so its output RMS is 0.02*sqrt(width)*rms(h1)
    with rms(h1) = 0.02*sqrt(16): exponent +0.5 exactly; layer 1's fan-in is fixed: 0."""
    report = sweep("fixed_std")
    assert module(report, "layers.0").forward == pytest.approx(0.0, abs=0.05)
    assert module(report, "layers.1").forward == pytest.approx(0.5, abs=0.05)
    assert module(report, "layers.2").forward == pytest.approx(1.0, abs=0.1)
    flagged = {f.evidence["quantity"]: f for f in report.findings if f.evidence["role"] == "hidden"}
    assert "layers.1" in flagged["forward"].layers and "init" in flagged["forward"].message
    assert report.summary.status == "error"


def test_fan_in_init_keeps_every_forward_exponent_at_zero() -> None:
    report = sweep("fan_in")
    for name in ("layers.0", "layers.1", "layers.2"):
        assert module(report, name).forward == pytest.approx(0.0, abs=0.05), name
    assert not [f for f in report.findings if f.evidence["quantity"] == "forward"]


def test_standard_parametrization_with_adam_fails_on_the_update() -> None:
    """One Adam step moves every weight by about lr: a hidden layer's output moves by lr * width."""
    report = sweep("standard")
    hidden = module(report, "fc2")
    assert hidden.role == "hidden" and hidden.update == pytest.approx(1.0, abs=0.25)
    assert hidden.backward == pytest.approx(-0.5, abs=0.1) and hidden.status == "off"
    update = [
        f for f in report.findings if f.evidence["quantity"] == "update" and f.evidence["role"] == "hidden"
    ]
    assert update and update[0].severity.value == "error" and "learning rate" in update[0].message
    assert report.summary.status == "error"


def test_mup_passes_with_the_exponents_the_algebra_gives(mup_report: ScaleReport) -> None:
    assert mup_report.findings == () and mup_report.summary.status == "healthy"
    roles = {m.name: m.role for m in mup_report.modules}
    assert roles == {"fc1": "input", "fc2": "hidden", "fc3": "hidden", "head": "readout"}
    assert module(mup_report, "fc2").backward == pytest.approx(-1.0, abs=0.1)
    assert module(mup_report, "fc2").update == pytest.approx(0.0, abs=0.15)
    assert module(mup_report, "head").forward == pytest.approx(-0.5, abs=0.2)
    assert all(m.status == "ok" for m in mup_report.modules)


def test_a_hidden_dimension_not_scaled_is_flagged_where_it_is() -> None:
    report = sweep("mup_bottleneck", "mup")
    assert module(report, "fc2").role == "readout" and module(report, "fc2").status == "off"
    found = [f for f in report.findings if "fc2" in f.layers]
    assert found and "hidden dimension not scaled" in found[0].message
    assert module(report, "fc1").status == "ok"


def test_an_unscaled_readout_is_flagged_at_the_readout() -> None:
    report = sweep("mup_unscaled_readout", "mup")
    readout = [f for f in report.findings if f.evidence["role"] == "readout"]
    assert readout and all(f.layers == ("head",) for f in readout)
    assert {f.evidence["quantity"] for f in readout} >= {"forward", "update"}
    assert "readout is not scaled" in next(f for f in readout if f.evidence["quantity"] == "forward").message


def test_the_report_crosses_the_process_boundary_as_data(mup_report: ScaleReport) -> None:
    data = wire.encode(wire.as_fields(("scale", 0, mup_report)))
    kind, index, back = wire.decode(data)
    assert (kind, index) == ("scale", 0) and back == mup_report
    assert not wire.nothing_measured(back) and wire.inconsistent(back) is None


def test_json_has_the_scale_section(mup_report: ScaleReport) -> None:
    from gradcheck_cli.render.scale import SCALE_RENDERERS

    doc = json.loads(SCALE_RENDERERS["json"](mup_report, 100))
    assert doc["schema"] == "gradcheck.scale/1" and doc["scale"]["widths"] == [64, 128, 256, 512]
    first = doc["scale"]["modules"][0]
    assert {"name", "role", "forward", "backward", "update", "expected", "status"} <= set(first)
    assert first["expected"]["backward"] == [-1.0, -1.0]
    for fmt in ("rich", "markdown", "html"):
        assert "fc2" in SCALE_RENDERERS[fmt](mup_report, 100)
    page = SCALE_RENDERERS["html"](mup_report, 100)
    assert page.count("<svg") == 3 and page.count("stroke='#4a7'") == 3 * len(mup_report.modules)


def test_the_command_runs_and_exits_by_its_findings(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "scale.json"
    args = ["scale", f"{MODELS}:standard", "-w", "width=32,64", "-i", "8x16", "--seeds", "1", "--steps", "2"]
    result = cli(*args, "-f", "json", "-o", str(out))
    assert result.exit_code == 1, result
    doc = json.loads(out.read_text())
    assert doc["summary"]["status"] == "error" and doc["findings"][0]["id"] == "width-exponent"
    assert "wrote" in result.stderr
    assert cli(*args, "--fail-on", "never").exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-w", "width=64"], "at least two different sizes"),
        (["-w", "64,128"], "cannot read --width"),
        (["-w", "width=64,x"], "integers only"),
        (["-w", "depth=32,64"], "depth=32"),
        (["-w", "width=32,64", "-p", "ntk"], "--parametrization"),
        (["-w", "width=32,64", "--steps", "1"], "--steps"),
    ],
)
def test_bad_input_is_exit_2_with_one_message(cli, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("scale", f"{MODELS}:standard", "-i", "8x16", "--seeds", "1", *args)
    assert result.exit_code == 2, result
    assert message in result.stderr and "Traceback" not in result.stderr


def test_roles_come_from_how_the_shapes_change() -> None:
    from gradcheck_cli.measure.scale_roles import Shape, role_of

    def shapes(*pairs: tuple[int, int]) -> list[Shape]:
        return [Shape("Linear", i, o, "matrix") for i, o in pairs]

    assert role_of(shapes((16, 64), (16, 128))) == "input"
    assert role_of(shapes((64, 64), (128, 128))) == "hidden"
    assert role_of(shapes((64, 8), (128, 8))) == "readout"
    assert role_of(shapes((8, 8), (8, 8))) == "fixed"
    assert role_of([Shape("LayerNorm", 0, 0, "norm")] * 2) == "norm"


def test_modules_are_classified_by_kind_and_shape() -> None:
    from torch import nn

    from gradcheck_cli.measure.scale_roles import classify, select_modules

    assert classify(nn.MultiheadAttention(32, 4)).group == "attention"
    assert classify(nn.LayerNorm(32)).group == "norm"
    embedding = classify(nn.Embedding(1000, 32))
    assert (embedding.fan_in, embedding.fan_out) == (1000, 32)
    conv = classify(nn.Conv2d(8, 16, 3))
    assert (conv.fan_in, conv.fan_out) == (8 * 9, 16)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.MultiheadAttention(8, 2))
    assert set(select_modules(model)) == {"0", "2", "2.out_proj"}


def test_a_call_form_target_gets_the_width_as_a_keyword(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "scale.json"
    target = f"{MODELS}:MLP(mup=True, bottleneck=False)"
    result = cli(
        "scale",
        target,
        "-w",
        "width=32,64",
        "-i",
        "8x16",
        "--seeds",
        "1",
        "-p",
        "mup",
        "-f",
        "json",
        "-o",
        str(out),
    )
    assert result.exit_code in (0, 1), result
    modules = {m["name"]: m for m in json.loads(out.read_text())["scale"]["modules"]}
    assert modules["fc2"]["role"] == "hidden" and modules["fc2"]["fan_in"] == "width"
    assert modules["fc2"]["expected"]["backward"] == [-1.0, -1.0]


def test_the_sweep_runs_in_the_worker_process(tmp_path: Path) -> None:
    """The user's code runs in the worker, never in the CLI's process; the report crosses as data."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "GRADCHECK_IN_PROCESS"}
    args = [
        "scale",
        f"{MODELS}:mup",
        "-w",
        "width=16,32",
        "-i",
        "4x16",
        "--seeds",
        "1",
        "-p",
        "mup",
        "-f",
        "json",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "gradcheck_cli", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode in (0, 1), done.stderr
    doc = json.loads(done.stdout)
    assert doc["scale"]["widths"] == [16, 32] and len(doc["scale"]["modules"]) == 4
