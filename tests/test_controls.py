"""The healthy control set: widely used architectures must never get an error finding.

A false alarm on a healthy ResNet teaches users to ignore the tool, so each control runs
the whole pipeline (real forward/backward passes) and must come back without errors.
Models are thin and inputs small so the set runs in seconds; depth is kept where depth
is the point (ResNet-152's 50 bottlenecks, DenseNet-121's 58 dense layers, 30 residual
MLP blocks, 200 recurrent steps).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gradcheck_cli.config.analyze_config import build_config
from gradcheck_cli.records.findings import LayerStatus, Severity
from gradcheck_cli.records.report import Report
from gradcheck_cli.run.pipeline import analyze_target

CONTROLS = Path(__file__).parent / "fixtures" / "controls"

# These models are tiny: on a shared 2-core machine torch's intra-op threads only fight
# each other (measured: 35 s with the default threads, 4.4 s with one, for these tests).
torch.set_num_threads(1)


def run(target: str, **flags: object) -> Report:
    config = build_config(str(CONTROLS / target), {"batches": 2, **flags}, {})
    return analyze_target(config)


def errors(report: Report) -> list[str]:
    return [f"{f.id}: {f.message}" for f in report.findings if f.severity is Severity.ERROR]


@pytest.mark.parametrize(
    "target",
    [
        "gpt_pre_ln.py",
        "resnet_cifar.py",
        "vgg19_bn.py",
        "densenet.py",
        "mobilenet_v2.py",
        "unet.py",
        "vit.py",
        "residual_mlp.py",
        "shallow_relu_mlp.py",
    ],
)
def test_control_has_no_error(target: str) -> None:
    report = run(target)
    assert errors(report) == []


def test_resnet152_growth_is_at_most_a_warning_with_the_init_fix() -> None:
    report = run("resnet_cifar.py:resnet152", inputs=(), batch_size=None)
    assert errors(report) == []
    for finding in report.findings:
        if finding.id == "exploding-gradients":
            assert finding.severity is Severity.WARNING
            assert [s.fix for s in finding.suggestions] == ["init"]
            assert "zero-init the last BatchNorm gain" in finding.suggestions[0].text


@pytest.mark.parametrize("target", ["recurrent_gated.py", "recurrent_gated.py:gru"])
def test_gated_recurrent_controls_keep_their_gradient_over_200_steps(target: str) -> None:
    report = run(target, batches=1)
    assert errors(report) == []
    (tt,) = report.through_time
    assert tt.steps == 200
    assert tt.horizon > 100


def test_gpt_tied_head_is_counted_once() -> None:
    report = run("gpt_pre_ln.py", batches=1)
    tied = [row.stats for row in report.layers if row.stats.shared_with]
    assert [layer.name for layer in tied] == ["lm_head"]
    assert tied[0].shared_with == "wte"


def test_frozen_backbone_is_frozen_and_only_an_info() -> None:
    report = run("frozen_backbone.py")
    assert errors(report) == []
    status = {row.stats.name: row.status for row in report.layers}
    assert status["backbone.0"] is LayerStatus.FROZEN
    assert status["head.0"] is LayerStatus.OK
    (info,) = [f for f in report.findings if f.id == "no-gradient"]
    assert info.severity is Severity.INFO
    assert set(info.evidence["frozen"]) == {"backbone.0", "backbone.1", "backbone.3", "backbone.4"}  # type: ignore[arg-type]


def test_attention_out_projection_is_listed_as_not_measured_not_zero() -> None:
    # nn.MultiheadAttention uses out_proj.weight directly, so out_proj's hooks never fire.
    report = run("vit.py", batches=1)
    rows = {row.stats.name: row.stats for row in report.layers}
    out_proj = rows["blocks.0.attn.out_proj"]
    assert not out_proj.hooked and out_proj.has_grad
    assert out_proj.act_grad_norm != out_proj.act_grad_norm  # NaN: unknown, not 0
    (info,) = [f for f in report.findings if f.id == "no-gradient"]
    assert "blocks.0.attn.out_proj" in info.evidence["not_measured"]  # type: ignore[operator]
