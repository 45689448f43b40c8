"""The zero-init-gain passes (measure/zero_gains.py) run only where a tiny parameter can gate a signal:
one that is multiplied in (a LayerScale gamma, a zero BN gain, a zero head), never one that is
only added, concatenated or looked up (a ViT's zero cls token or position embedding). Each case
against plain PyTorch: a zero parameter of the first kind zeroes the gradient behind it, one of
the second kind does not."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradcheck_cli import analyze
from gradcheck_cli.measure import zero_gains
from gradcheck_cli.measure.structure import multiplied


class Block(nn.Module):
    def __init__(self, dim: int, layer_scale: float | None) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.fc1, self.fc2 = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)
        scale = torch.ones(dim) if layer_scale is None else layer_scale * torch.ones(dim)
        self.gamma1 = nn.Parameter(scale.clone(), requires_grad=layer_scale is not None)
        self.gamma2 = nn.Parameter(scale.clone(), requires_grad=layer_scale is not None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.gamma1 * self.attn(y, y, y, need_weights=False)[0]
        return x + self.gamma2 * self.fc2(torch.relu(self.fc1(self.norm2(x))))


class TinyViT(nn.Module):
    """A ViT of our own: zero cls token and zero position embedding (both added), two blocks,
    LayerScale gammas when `layer_scale` is given (CaiT/DeiT-III style, multiplied)."""

    def __init__(self, layer_scale: float | None = None, dim: int = 16) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + 16, dim))
        self.blocks = nn.Sequential(Block(dim, layer_scale), Block(dim, layer_scale))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


@pytest.fixture
def passes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many extra forward/backward passes the zero-gain check ran."""
    count: list[int] = []
    measured = zero_gains._pass

    def counted(*args: object, **kwargs: object) -> object:
        count.append(1)
        return measured(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(zero_gains, "_pass", counted)
    return count


def test_plain_pytorch_an_added_zero_closes_no_path_a_multiplied_one_does() -> None:
    """What the classification must agree with: with gamma = 0 the attention gets no gradient;
    with a zero cls token and position embedding every layer still gets one."""
    torch.manual_seed(0)
    for layer_scale, attention_grad_is_zero in ((None, False), (0.0, True)):
        model = TinyViT(layer_scale)
        x, y = torch.randn(2, 3, 16, 16), torch.randint(0, 10, (2,))
        nn.functional.cross_entropy(model(x), y).backward()
        grad = model.blocks[0].attn.in_proj_weight.grad
        assert grad is not None and (float(grad.abs().max()) == 0.0) is attention_grad_is_zero
        assert float(model.patch.weight.grad.abs().max()) > 0 or attention_grad_is_zero


def test_the_graph_tells_added_from_multiplied_parameters() -> None:
    gain, cls, pos = (
        nn.Parameter(torch.zeros(4)),
        nn.Parameter(torch.zeros(1, 4)),
        nn.Parameter(torch.zeros(3, 4)),
    )
    table, head = nn.Parameter(torch.zeros(5, 4)), nn.Parameter(torch.zeros(2, 4))
    one_plus = nn.Parameter(torch.zeros(4))
    x = torch.randn(2, 4, requires_grad=True)
    tokens = torch.cat([cls, x], dim=0) + pos  # added and concatenated
    looked_up = nn.functional.embedding(torch.tensor([1, 2, 3]), table)
    mixed = (tokens + looked_up) * gain * (1 + one_plus)  # multiplied; (1 + p) is a sum
    loss = nn.functional.linear(mixed, head).sum()  # a zero head multiplies
    named = [
        ("gain", gain),
        ("cls", cls),
        ("pos", pos),
        ("table", table),
        ("head", head),
        ("one_plus", one_plus),
    ]
    assert sorted(multiplied(loss, named)) == ["gain", "head"]
    assert multiplied(loss, [("unused", nn.Parameter(torch.zeros(1)))]) == []


def test_a_vit_with_zero_cls_token_and_position_embedding_gets_no_extra_pass(passes: list[int]) -> None:
    torch.manual_seed(0)
    model = TinyViT()
    assert {name for name, _ in zero_gains.candidates(model)} == {"cls_token", "pos_embed"}
    report = analyze(model, "2x3x16x16", device="cpu", batches=1)
    assert passes == []
    assert not any(row.stats.gated_by for row in report.layers)
    assert report.exit_code() == 0, [f.message for f in report.findings]


def test_a_layer_scale_vit_still_gets_the_passes_and_its_gates(passes: list[int]) -> None:
    torch.manual_seed(0)
    report = analyze(TinyViT(layer_scale=1e-6), "2x3x16x16", device="cpu", batches=1)
    assert len(passes) >= 2  # closed, then opened
    gated = {row.stats.gated_by for row in report.layers if row.stats.gated_by}
    assert gated and all(".gamma" in name for name in gated)
    assert "blocks.0.gamma1" in gated and "cls_token" not in gated and "pos_embed" not in gated
