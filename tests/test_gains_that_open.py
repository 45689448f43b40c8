"""Gains that open in a step or two (issue 22): a chain of two zero gains opens at step 2 and is
gated, not stuck; gated layers compare only within one stage. Each against plain PyTorch steps."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from gradcheck_cli import analyze
from gradcheck_cli.judge.rules.profile import depth_groups
from gradcheck_cli.records.findings import LayerStatus

FAMILIES = Path(__file__).parent / "fixtures" / "families"


def build(stem: str) -> torch.nn.Module:
    spec = importlib.util.spec_from_file_location(stem, FAMILIES / f"{stem}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    return module.build_model()


def test_global_context_behind_a_zero_bn_gain_opens_at_step_two_in_plain_pytorch() -> None:
    """What the tool must predict: fc2's gradient is 0 at init, non-zero after one SGD step (bn3
    moved), and the layers in front of fc2 get a gradient after the second."""
    model = build("gc_resnet")
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    block = model.blocks[0]
    seen = []
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        seen.append((float(block.gc.fc2.weight.grad.norm()), float(block.gc.fc1.weight.grad.norm())))
        opt.step()
    assert seen[0] == (0.0, 0.0)
    assert seen[1][0] > 0 and seen[1][1] == 0.0
    assert seen[2][1] > 0


def test_the_chain_is_measured_as_gated_not_stuck() -> None:
    model = build("gc_resnet")
    report = analyze(model, "2x3x16x16", device="cpu", batches=1)
    assert report.exit_code() == 0, [f.message for f in report.findings]
    rows = {row.stats.name: row for row in report.layers}
    fc1 = rows["blocks.0.gc.fc1"]
    assert fc1.status is LayerStatus.GATED and fc1.stats.gated_by == "blocks.0.gc.fc2.weight"
    assert fc1.stats.open_act_grad_norm > 0
    assert rows["blocks.0.conv3"].stats.gated_by == "blocks.0.bn3.weight"


def test_gated_layers_are_grouped_by_stage() -> None:
    """LeViT-style: stages of width 32/48/64, each branch behind a zero BN gain; depth groups of
    gated layers never mix stages."""
    report = analyze(build("levit"), "2x3x32x32", device="cpu", batches=1)
    assert report.exit_code() == 0, [f.message for f in report.findings]
    gated = [row.stats for row in report.layers if row.stats.gated_by is not None]
    assert {s.gate_width for s in gated} == {32, 48, 64}
    groups = depth_groups([row.stats for row in report.layers], 3)
    for group in groups:
        assert len({s.gate_width for s in group.layers}) == 1, group.key
    assert any("of width 48" in group.key for group in groups)
