"""The four reference models of the overhead benchmark, in plain PyTorch.

Each `build_*()` returns (model, make_batch, loss_fn); `make_batch(generator)` returns
(inputs, target). The file is also a gradcheck TARGET: `reference_models.py:build_cnn_module()`
and friends return the bare module, and `sample_batch()`/`loss_fn()` are not defined here,
so `gradcheck analyze` infers inputs (benchmarks/cli.py passes --input explicitly).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

Batch = tuple[Any, torch.Tensor]
Built = tuple[nn.Module, Callable[[torch.Generator], Batch], Callable[[Any, torch.Tensor], torch.Tensor]]


# -- ResNet-18-style CNN -------------------------------------------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.down(x))


class ResNet18(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, 3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        blocks: list[nn.Module] = []
        cin = 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*blocks)
        self.head = nn.Linear(512, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def build_cnn() -> Built:
    def batch(g: torch.Generator) -> Batch:
        return torch.randn(8, 3, 64, 64, generator=g), torch.randint(0, 10, (8,), generator=g)

    return ResNet18(), batch, F.cross_entropy


# -- pre-LN transformers -------------------------------------------------------------------------
class Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 4 * d)
        self.act = nn.GELU()
        self.out = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.out(self.act(self.fc(self.ln2(x))))


class Transformer(nn.Module):
    def __init__(self, vocab: int, d: int, heads: int, layers: int, context: int, tied: bool) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(context, d)
        self.blocks = nn.Sequential(*[Block(d, heads) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        if tied:
            self.lm_head.weight = self.tok.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        return self.lm_head(self.ln_f(self.blocks(self.tok(idx) + self.pos(pos))))


def _lm_batch(vocab: int, batch: int, seq: int) -> Callable[[torch.Generator], Batch]:
    def make(g: torch.Generator) -> Batch:
        return torch.randint(0, vocab, (batch, seq), generator=g), torch.randint(
            0, vocab, (batch, seq), generator=g
        )

    return make


def _lm_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1), target.flatten())


def build_transformer() -> Built:
    """6-layer pre-LN transformer, d_model 256, 4 heads, sequence 128, batch 8."""
    return (
        Transformer(vocab=1000, d=256, heads=4, layers=6, context=128, tied=False),
        _lm_batch(1000, 8, 128),
        _lm_loss,
    )


def build_gpt2_small() -> Built:
    """GPT-2 small: 12 layers, d 768, 12 heads, vocab 50257, 1024 positions, tied head: 124M parameters."""
    model = Transformer(vocab=50257, d=768, heads=12, layers=12, context=1024, tied=True)
    return model, _lm_batch(50257, 2, 256), _lm_loss


# -- deep tanh MLP -------------------------------------------------------------------------------
def build_mlp(depth: int = 100, width: int = 256) -> Built:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.Tanh()]
    model = nn.Sequential(*layers[:-1])

    def batch(g: torch.Generator) -> Batch:
        return torch.randn(64, width, generator=g), torch.randn(64, width, generator=g)

    return model, batch, F.mse_loss


# -- recurrent model for the through-time pass ---------------------------------------------------
class GRUModel(nn.Module):
    def __init__(self, features: int = 32, hidden: int = 64) -> None:
        super().__init__()
        self.gru = nn.GRU(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.gru(x)[0][:, -1])


def build_gru(steps: int = 200) -> Built:
    def batch(g: torch.Generator) -> Batch:
        return torch.randn(8, steps, 32, generator=g), torch.randn(8, 1, generator=g)

    return GRUModel(), batch, F.mse_loss


BUILDERS: dict[str, Callable[[], Built]] = {
    "cnn": build_cnn,
    "transformer": build_transformer,
    "mlp": build_mlp,
    "gpt2": build_gpt2_small,
    "gru": build_gru,
}


# Bare modules for `gradcheck analyze benchmarks/reference_models.py:NAME()`.
def cnn_module() -> nn.Module:
    return build_cnn()[0]


def transformer_module() -> nn.Module:
    return build_transformer()[0]


def mlp_module(depth: int = 100, width: int = 256) -> nn.Module:
    return build_mlp(depth, width)[0]


def gpt2_module() -> nn.Module:
    return build_gpt2_small()[0]


class ResidualMLP(nn.Module):
    """x + Linear(tanh(LayerNorm(x))) blocks: depth without vanishing, so no denormal floats.

    The time-per-layer benchmark uses it: a plain deep tanh MLP drives activations and
    gradients into denormal range, where CPU arithmetic slows by 10-100x and the timing
    measures the floating-point unit, not the probe.
    """

    def __init__(self, depth: int, width: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Tanh(), nn.Linear(width, width)) for _ in range(depth)
        )
        self.head = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = x + block(x)
        return self.head(x)


def residual_mlp_module(depth: int = 100, width: int = 64) -> nn.Module:
    return ResidualMLP(depth, width)
