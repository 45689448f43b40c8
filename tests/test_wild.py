"""Model files written the way people write them, analysed end to end by the CLI.

Each file in tests/fixtures/wild is run with at most a TARGET expression and a few flags, and
must exit 0 or 1 (analysed), never 2; the files meant to fail exit 2 with a readable message.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

WILD = Path(__file__).parent / "fixtures" / "wild"
FAST = ("--format", "json", "--device", "cpu", "--batches", "1", "--batch-size", "4")

# (TARGET relative to the corpus, extra flags, what the report must show)
ANALYSED = [
    ("gpt_config.py:GPT", ("--target-arg", "targets", "--init", "n_layer=1"), {"loss": "output"}),
    ("gpt_config.py", (), {"class": "GPT", "loss": "ce"}),
    (
        "mingpt_style.py:GPT",
        ("--init", "vocab_size=64", "--init", "block_size=16", "--target-arg", "targets"),
        {"loss": "output"},
    ),
    ('word_lm.py:RNNModel("LSTM", 100, 16, 16, 2)', (), {"loss": "nll", "input": "int:32x4:100"}),
    ('word_lm.py:RNNModel("RNN_TANH", 50, 8, 8, 1, dropout=0.0)', (), {"loss": "nll"}),
    ("char_gru.py", (), {"input": "int:4x32:40"}),
    ("resnet_cifar.py:ResNet18", (), {"input": "float:4x3x32x32"}),
    ('vgg_switch.py:VGG("VGG11")', (), {"class": "VGG"}),
    (
        "vit_kwonly.py:ViT",
        tuple(
            f"--init={kv}"
            for kv in ("image_size=64", "patch_size=16", "num_classes=10", "dim=16", "depth=1", "heads=2")
        )
        + ("--init", "mlp_dim=32"),
        {"input": "float:4x3x64x64"},
    ),
    ("unet_pkg/unet_model.py:unet_carvana", (), {"class": "UNet", "loss": "ce"}),
    ("unet_pkg/unet_model.py:UNet(3, 2)", (), {"class": "UNet"}),
    ("proj/mypkg/models/classifier.py", (), {"class": "Classifier"}),
    ("vae.py", (), {"class": "VAE"}),
    ("argv_defaults.py", (), {"input": "float:4x12"}),
    ("noisy.py", (), {"class": "Noisy"}),
    ("float64_model.py", ("--dtype", "float64"), {"class": "DoubleNet"}),
    ("dcgan.py:Generator", (), {"input": "float:4x16x1x1"}),
    ("dcgan.py:Discriminator", (), {"input": "float:4x3x32x32", "loss": "bce"}),
    ("mnist_logsoftmax.py", (), {"input": "float:4x1x28x28", "loss": "nll"}),
    ("stl_net.py", (), {"input": "float:4x1x64x64"}),
    ("hf_style.py", (), {"loss": "output"}),
    ("dataloader_batch.py", (), {"loss": "loss_fn"}),
]


@pytest.mark.parametrize(("target", "flags", "expect"), ANALYSED, ids=[a[0] for a in ANALYSED])
def test_wild_file_is_analysed(cli, monkeypatch, target, flags, expect) -> None:
    monkeypatch.chdir(WILD)
    result = cli("analyze", target, *flags, *FAST)
    assert result.exit_code in (0, 1), result
    report = json.loads(result.stdout)
    if "class" in expect:
        assert report["model"]["class"] == expect["class"]
    if "loss" in expect:
        assert report["run"]["loss"] == expect["loss"], report["run"]
    if "input" in expect:
        assert report["run"]["inputs"][0] == expect["input"]
    assert report["run"]["loss_reason"]
    assert report["layers"], "no layer was measured"
    assert "Traceback" not in result.stderr


def test_corpus_has_at_least_fifteen_model_files() -> None:
    files = [p for p in WILD.rglob("*.py") if p.name != "__init__.py"]
    assert len(files) >= 15


def test_printing_model_keeps_json_clean(cli, monkeypatch) -> None:
    monkeypatch.chdir(WILD)
    result = cli("analyze", "noisy.py", *FAST)
    assert result.exit_code == 0, result
    json.loads(result.stdout)  # nothing the model printed is mixed in
    assert "loading noisy model file" in result.stderr
    assert "building Noisy" in result.stderr
    assert "forward (4, 8)" in result.stderr


def test_prints_in_sample_batch_and_loss_fn_go_to_stderr(cli, monkeypatch) -> None:
    monkeypatch.chdir(WILD)
    result = cli("analyze", "dataloader_batch.py", *FAST)
    json.loads(result.stdout)
    assert "sampled a batch of 32" in result.stderr and "loss_fn called" in result.stderr


def test_constructor_arguments_go_into_the_report(cli, monkeypatch) -> None:
    monkeypatch.chdir(WILD)
    result = cli("analyze", "gpt_config.py:GPT", "--init", "n_layer=1", "--init", "n_embd=8", *FAST)
    config = json.loads(result.stdout)["model"]["init_args"]["config"]
    assert config["n_layer"] == 1 and config["n_embd"] == 8 and config["vocab_size"] == 64
    call = json.loads(cli("analyze", 'vgg_switch.py:VGG("VGG13")', *FAST).stdout)["model"]["init_args"]
    assert call == {"call": 'VGG("VGG13")'}


def test_model_key_in_yaml_config_sets_init_args(cli, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(WILD)
    config = tmp_path / "gradcheck.yaml"
    config.write_text(f"target: {WILD / 'mingpt_style.py'}:GPT\nmodel:\n  vocab_size: 32\n  block_size: 8\n")
    result = cli("analyze", "--config", str(config), *FAST)
    assert result.exit_code in (0, 1), result
    report = json.loads(result.stdout)
    assert report["model"]["init_args"]["config"]["vocab_size"] == 32
    assert report["run"]["inputs"][0] == "int:4x8:32"


def test_layout_flag_overrides_batch_first(cli, monkeypatch) -> None:
    monkeypatch.chdir(WILD)
    detected = json.loads(cli("analyze", "char_gru.py", *FAST).stdout)["run"]["inputs"]
    assert detected[0] == "int:4x32:40"  # the GRU says batch_first=True
    result = cli("analyze", "char_gru.py", "--layout", "seq-first", *FAST)
    assert result.exit_code in (0, 1), result
    assert json.loads(result.stdout)["run"]["inputs"][0] == "int:32x4:40"


def test_hidden_state_comes_from_init_hidden_else_none(cli, monkeypatch) -> None:
    monkeypatch.chdir(WILD)
    lm = json.loads(cli("analyze", 'word_lm.py:RNNModel("GRU", 30, 8, 8, 1, dropout=0.0)', *FAST).stdout)
    assert lm["run"]["inputs"] == ["int:32x4:30", "model.init_hidden(4)"]
    gru = json.loads(cli("analyze", "char_gru.py", *FAST).stdout)
    assert gru["run"]["inputs"] == ["int:4x32:40", "None"]
