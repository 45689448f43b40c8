"""Gate saturation of LSTM/GRU layers: recomputed gates match the fused kernel; saturated gates fire."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from torch import nn

from gradcheck_cli.measure.cell_gate_saturation import _initial, _layer
from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "trained"
MODEL = str(FIXTURES / "lstm_tagger.py")


@pytest.mark.parametrize("kind", [nn.LSTM, nn.GRU])
def test_recomputed_gates_reproduce_the_fused_kernel(kind: type[nn.RNNBase]) -> None:
    torch.manual_seed(0)
    rnn = kind(5, 7, num_layers=2)
    x = torch.randn(9, 3, 5)
    expected, _ = rnn(x)
    seq = x
    lstm = kind is nn.LSTM
    with torch.no_grad():
        for layer in range(2):
            seq, _ = _layer(rnn, layer, seq, _initial(None, layer, lstm, rnn, seq), lstm)
    assert torch.allclose(seq, expected, atol=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_saturated_gates_fire_on_grown_weights_not_on_the_model_as_built(cli, kind: str) -> None:
    grown = cli(
        "analyze", f"{MODEL}:LSTMTagger(kind='{kind}', scale=10.0)", "--batches", "1", "--format", "json"
    )
    doc = json.loads(grown.stdout)
    finding = next(f for f in doc["findings"] if f["id"] == "saturated-gates")
    assert finding["layers"] == ["rnn"] and all(v > 0.5 for v in finding["evidence"]["saturated_fraction"])
    fresh = cli("analyze", f"{MODEL}:LSTMTagger(kind='{kind}')", "--batches", "1", "--format", "json")
    fresh_doc = json.loads(fresh.stdout)
    assert not [f for f in fresh_doc["findings"] if f["id"] == "saturated-gates"]
    assert all(v < 0.1 for v in fresh_doc["gate_saturation"][0]["saturated_fraction"].values())
    sys.modules.pop("lstm_tagger", None)


ATTENTION = str(FIXTURES / "attention_block.py")


@pytest.mark.parametrize("style", ["mha", "sdpa"])
def test_attention_collapse_fires_on_grown_query_key_weights_only(cli, style: str) -> None:
    grown = json.loads(
        cli(
            "analyze",
            f"{ATTENTION}:AttentionClassifier('{style}', qk_scale=20.0)",
            "--batches",
            "1",
            "--format",
            "json",
        ).stdout
    )
    finding = next(f for f in grown["findings"] if f["id"] == "attention-collapse")
    site = "mha" if style == "mha" else "model:sdpa"
    assert finding["evidence"]["sites"] == [site]
    assert finding["evidence"]["collapsed_fraction"][0] > 0.5
    fresh = json.loads(
        cli(
            "analyze", f"{ATTENTION}:AttentionClassifier('{style}')", "--batches", "1", "--format", "json"
        ).stdout
    )
    assert not [f for f in fresh["findings"] if f["id"] == "attention-collapse"]
    (stats,) = fresh["attention"]
    assert stats["name"] == site and stats["entropy"] > 0.8 and stats["collapsed_fraction"] < 0.2
    sys.modules.pop("attention_block", None)


def test_recomputed_attention_matches_the_weights_mha_returns() -> None:
    from gradcheck_cli.measure.attention import _mha_mask, _project

    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, batch_first=True)
    x = torch.randn(2, 6, 16)
    mask = torch.ones(6, 6, dtype=torch.bool).triu(1)
    _, expected = mha(x, x, x, attn_mask=mask, average_attn_weights=False)
    q, k = _project(mha, x, x)
    logits = q @ k.transpose(-2, -1) / 2.0 + _mha_mask(mask, None, False, q, k)
    assert torch.allclose(logits.softmax(-1), expected, atol=1e-5)


def test_versus_pairs_the_horizon_and_gates_of_a_recurrent_model(cli, tmp_path) -> None:
    sys.path.insert(0, str(FIXTURES))
    from lstm_tagger import LSTMTagger

    torch.manual_seed(0)  # the init gradcheck builds for the same target and seed
    torch.save(LSTMTagger(scale=10.0).state_dict(), tmp_path / "grown.pt")
    result = cli(
        "analyze",
        MODEL,
        "--weights",
        str(tmp_path / "grown.pt"),
        "--versus",
        "init",
        "--batches",
        "1",
        "--format",
        "json",
    )
    doc = json.loads(result.stdout)
    (horizon,) = doc["versus"]["through_time"]
    assert horizon["module"] == "rnn" and len(horizon["horizon"]) == 2
    worst = max(doc["versus"]["gates"], key=lambda g: g["saturated_fraction"][0])
    assert worst["saturated_fraction"][0] > 0.5 and worst["saturated_fraction"][1] < 0.1
    finding = next(f for f in doc["findings"] if f["id"] == "saturated-gates")
    assert finding["evidence"]["at_reference"] is not None
    sys.modules.pop("lstm_tagger", None)


def test_versus_pairs_attention_entropy_with_init(cli, tmp_path) -> None:
    sys.path.insert(0, str(FIXTURES))
    from attention_block import AttentionClassifier

    torch.manual_seed(0)
    torch.save(AttentionClassifier(qk_scale=20.0).state_dict(), tmp_path / "grown.pt")
    result = cli(
        "analyze",
        ATTENTION,
        "--weights",
        str(tmp_path / "grown.pt"),
        "--versus",
        "init",
        "--batches",
        "1",
        "--format",
        "json",
    )
    doc = json.loads(result.stdout)
    (site,) = doc["versus"]["attention"]
    assert site["name"] == "mha" and site["entropy"][0] < 0.5 < site["entropy"][1]
    finding = next(f for f in doc["findings"] if f["id"] == "attention-collapse")
    assert finding["evidence"]["entropy_at_reference"] == [pytest.approx(site["entropy"][1], rel=1e-2)]
    sys.modules.pop("attention_block", None)
