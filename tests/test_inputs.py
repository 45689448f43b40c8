"""Inputs: batch normalisation, inference by forward order, spatial search, layout, extra args, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from gradcheck_cli.config.specs import parse_input
from gradcheck_cli.measure.batches import normalize_batch
from gradcheck_cli.measure.input_search import search_inputs
from gradcheck_cli.measure.inputs import InputPlan, candidate_specs, extra_forward_args, infer_inputs
from gradcheck_cli.records.errors import InputError

WILD = Path(__file__).parent / "fixtures" / "wild"
JSON = ("--format", "json", "--device", "cpu", "--batches", "1", "--batch-size", "4")


def runs(model: nn.Module):
    """An attempt function as the pipeline builds it: generate, forward, report the exception."""

    def attempt(plan: InputPlan) -> Exception | None:
        generator = torch.Generator().manual_seed(0)
        args = [
            torch.randint(0, int(s.high or 2), s.shape, generator=generator)
            if s.kind == "int"
            else torch.randn(s.shape, generator=generator)
            for s in plan.specs
        ]
        try:
            with torch.no_grad():
                model(*args)
        except Exception as exc:
            return exc
        return None

    return attempt


class HeadFirst(nn.Module):
    """Registers the head before the stem: registration order lies, forward order does not."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(32, 10)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stem(x).mean(dim=(2, 3)).repeat(1, 4))


def test_first_layer_by_forward_order_not_registration() -> None:
    model = HeadFirst()
    assert infer_inputs(model, 4, None).specs[0].shape == (4, 32)  # the registration-order guess
    plan = search_inputs(model, 4, None, runs(model))
    assert plan.specs[0].shape == (4, 3, 32, 32)
    assert "stem (Conv2d)" in plan.origin


def test_spatial_size_search_says_what_it_chose() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.MaxPool2d(16), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)
    )
    plan = search_inputs(model, 2, None, runs(model))
    assert plan.specs[0].shape == (2, 1, 64, 64)
    assert "chose float:2x1x64x64 after float:2x1x28x28, float:2x1x32x32 failed" in plan.origin


def test_spatial_preference_by_channels() -> None:
    one = candidate_specs(nn.Conv2d(1, 2, 3), nn.Conv2d(1, 2, 3), 4, None)
    three = candidate_specs(nn.Conv2d(3, 2, 3), nn.Conv2d(3, 2, 3), 4, None)
    assert [s.shape[-1] for s in one] == [28, 32, 64, 224]
    assert [s.shape[-1] for s in three] == [32, 28, 64, 224]


def test_conv_transpose_gives_latent_noise() -> None:
    layer = nn.ConvTranspose2d(100, 8, 4)
    assert candidate_specs(layer, layer, 4, None)[0].shape == (4, 100, 1, 1)


def test_embedding_tokens_in_range_and_within_position_embedding() -> None:
    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok = nn.Embedding(50, 8)
            self.pos_emb = nn.Embedding(12, 8)

    model = Tiny()
    spec = candidate_specs(model, model.tok, 4, None)[0]
    assert (spec.kind, spec.high, spec.shape) == ("int", 50, (4, 12))


def test_layout_from_recurrent_batch_first_and_flag() -> None:
    seq_first = nn.ModuleDict({"emb": nn.Embedding(20, 4), "rnn": nn.LSTM(4, 4)})
    assert candidate_specs(seq_first, seq_first["emb"], 3, None)[0].shape == (32, 3)
    assert candidate_specs(seq_first, seq_first["emb"], 3, "batch-first")[0].shape == (3, 32)
    rnn = nn.GRU(5, 4, batch_first=True)
    assert candidate_specs(rnn, rnn, 3, None)[0].shape == (3, 32, 5)
    assert candidate_specs(rnn, rnn, 3, "seq-first")[0].shape == (32, 3, 5)


def test_lstm_cell_takes_features() -> None:
    cell = nn.LSTMCell(6, 4)
    assert candidate_specs(cell, cell, 4, None)[0].shape == (4, 6)


def test_extra_forward_args_from_init_hidden_else_none() -> None:
    class WithHidden(nn.Module):
        def forward(self, x, hidden, mask=None):
            return x

        def init_hidden(self, batch):
            return torch.zeros(batch)

    class Without(nn.Module):
        def forward(self, x, h):
            return x

    assert extra_forward_args(WithHidden(), 1) == ("init_hidden",)
    assert extra_forward_args(Without(), 1) == ("none",)
    assert extra_forward_args(nn.Linear(2, 2), 1) == ()


def test_nothing_fits_names_shapes_and_hint() -> None:
    class Picky(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)

        def forward(self, x):
            raise ValueError("wants 100x100 images")

    with pytest.raises(InputError) as info:
        search_inputs(Picky(), 2, None, runs(Picky()))
    assert "ValueError: wants 100x100 images" in info.value.message
    assert "float:2x3x32x32, float:2x3x28x28, float:2x3x64x64, float:2x3x224x224" in info.value.message
    assert "--input" in (info.value.hint or "")


@pytest.mark.parametrize(
    ("raw", "args", "kwargs", "has_target"),
    [
        (torch.zeros(2, 3), 1, 0, False),
        ({"input_ids": torch.zeros(2, 3)}, 0, 1, False),
        ((torch.zeros(2, 3), torch.zeros(2)), 1, 0, True),
        (((torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2)), 2, 0, True),
        ({"args": [torch.zeros(2)], "kwargs": {"m": 1}, "target": torch.zeros(2)}, 1, 1, True),
    ],
)
def test_sample_batch_forms(raw, args, kwargs, has_target) -> None:
    batch = normalize_batch(raw)
    assert (len(batch.args), len(batch.kwargs), batch.labels is not None) == (args, kwargs, has_target)


def test_input_range_and_dtype(cli, monkeypatch) -> None:
    import json

    monkeypatch.chdir(WILD)
    spec = parse_input("float:16x784:0..1")
    assert (spec.low, spec.high) == (0.0, 1.0)
    result = cli("analyze", "vae.py", "--input", "float:4x784:0..1", "--dtype", "float64", *JSON)
    assert result.exit_code in (0, 1), result
    report = json.loads(result.stdout)
    assert report["run"]["inputs"] == ["float:4x784:0..1"]
    assert report["model"]["dtype"] == "float64"


# --------------------------------------------------------------------------- CLI error modes


def test_forward_raises_shows_shapes_tried_and_input_hint(cli, monkeypatch) -> None:
    monkeypatch.chdir(WILD)
    result = cli("analyze", "wrong_shape.py", *JSON)
    assert result.exit_code == 2 and result.stdout == "" and "Traceback" not in result.stderr
    assert "Reshaper.forward (wrong_shape.py:13): self.fc(x).view(...) raised RuntimeError" in result.stderr
    assert "inputs tried (inferred from fc (Linear)): float:4x192" in result.stderr
    assert "hint: pass the input shape with --input" in result.stderr


def test_model_needing_float64_is_told_so(cli, monkeypatch) -> None:
    monkeypatch.chdir(WILD)
    result = cli("analyze", "float64_model.py", *JSON)
    assert result.exit_code == 2 and result.stdout == ""
    assert "--dtype float64" in result.stderr


def test_given_input_that_does_not_fit(cli, monkeypatch) -> None:
    monkeypatch.chdir(WILD)
    result = cli("analyze", "resnet_cifar.py:ResNet10", "--input", "4x1x32x32", *JSON)
    assert result.exit_code == 2 and result.stdout == "" and "Traceback" not in result.stderr
    assert "inputs tried (--input): (float32[4x1x32x32])" in result.stderr


@pytest.mark.parametrize("bad", ["4xx3", "int:4x8", "float:4x8:1..0", "a:b:c:d", "0x3"])
def test_malformed_input(cli, monkeypatch, bad) -> None:
    monkeypatch.chdir(WILD)
    result = cli("analyze", "vae.py", "--input", bad, *JSON)
    assert result.exit_code == 2 and result.stdout == "" and "Traceback" not in result.stderr
    assert "--input" in result.stderr


def test_target_arg_needs_a_target(cli, monkeypatch) -> None:
    monkeypatch.chdir(WILD)
    result = cli("analyze", "vae.py", "--target-arg", "y", *JSON)
    assert result.exit_code == 2 and result.stdout == ""
    assert "--target-arg y" in result.stderr and "sample_batch()" in result.stderr


def test_report_says_which_spatial_size_was_chosen(monkeypatch) -> None:
    from gradcheck_cli.config.analyze_config import build_config
    from gradcheck_cli.run.pipeline import analyze_target

    monkeypatch.chdir(WILD)
    config = build_config("stl_net.py", {"batches": 1, "batch_size": 2, "device": "cpu"}, {})
    run = analyze_target(config).run
    assert run.inputs == ("float:2x1x64x64",)
    assert "chose float:2x1x64x64 after float:2x1x28x28, float:2x1x32x32 failed" in run.input_origin
