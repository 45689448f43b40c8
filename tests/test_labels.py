"""--labels SPEC beside float inputs, and labels shaped for the head that consumes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from gradcheck_cli.config.analyze_config import build_config
from gradcheck_cli.config.specs import InputSpec, parse_labels
from gradcheck_cli.load.target import load
from gradcheck_cli.measure.batches import labels_for_head, stream
from gradcheck_cli.measure.preparation import prepare

HEADS = Path(__file__).parent / "fixtures" / "loaders" / "heads.py"
JSON = ("--format", "json", "--device", "cpu", "--batches", "2")


def ran(result) -> dict:
    assert result.exit_code == 0, result
    return json.loads(result.stdout)


def test_labels_beside_float_inputs_are_the_cross_entropy_target(cli) -> None:
    args = ("analyze", f"{HEADS}:ImageClassifier", "--input", "8x3x8x8", "--labels", "int:8:10", *JSON)
    report = ran(cli(*args))
    assert report["run"]["loss"] == "ce" and report["run"]["loss_reason"] == "integer target: cross-entropy"


def test_labels_are_drawn_from_their_own_stream_and_used_as_given() -> None:
    config = build_config(
        f"{HEADS}:ImageClassifier",
        {"inputs": (InputSpec(shape=(8, 3, 8, 8)),), "labels": parse_labels("int:8:10"), "device": "cpu"},
        {},
    )
    loaded = load(config.target, {}, {})
    prepared = prepare(config, loaded)
    for index, batch in enumerate(prepared.batches):
        expected = torch.randint(0, 10, (8,), generator=stream(0, "labels", index))
        assert torch.equal(batch.labels, expected)
        logits = loaded.module(*batch.args)
        assert torch.isfinite(F.cross_entropy(logits, batch.labels))


def test_labels_passed_as_the_target_arg(cli) -> None:
    args = ("analyze", f"{HEADS}:ImageClassifier", "--input", "4x3x8x8", "--labels", "int:4:10")
    report = ran(cli(*args, "--target-arg", "labels", *JSON))
    assert report["run"]["loss"] == "output"


def test_labels_with_another_batch_size_is_exit_2(cli) -> None:
    result = cli("analyze", f"{HEADS}:ImageClassifier", "--input", "8x3x8x8", "--labels", "int:4:10", *JSON)
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert "has batch size 4, the inputs have 8" in result.stderr and "--labels int:8:10" in result.stderr


def test_unreadable_labels_name_the_option(cli) -> None:
    result = cli("analyze", f"{HEADS}:ImageClassifier", "--labels", "int:8", *JSON)
    assert result.exit_code == 2 and "--labels 'int:8'" in result.stderr and "--input" not in result.stderr


@pytest.mark.parametrize(
    ("target", "shape"),
    [("SequenceClassifier", "(B,)"), ("TokenTagger", "(B, T)")],
)
def test_target_arg_labels_fit_the_head(cli, target: str, shape: str) -> None:
    """A sequence classifier gets (B,) labels, a token tagger (B, T): the model asserts the shape."""
    report = ran(
        cli("analyze", f"{HEADS}:{target}", "--input", "int:4x12:100", "--target-arg", "labels", *JSON)
    )
    assert report["run"]["loss"] == "output", shape


def test_labels_for_head_shapes() -> None:
    assert labels_for_head(torch.zeros(4, 3), 4) == InputSpec(shape=(4,), kind="int", low=0, high=3)
    assert labels_for_head(torch.zeros(4, 7, 50), 4) == InputSpec(shape=(4, 7), kind="int", low=0, high=50)
    assert labels_for_head(torch.zeros(4, 1), 4) == InputSpec(shape=(4,))
    assert labels_for_head(torch.zeros(3, 4), 4) is None


def test_labels_beside_a_builtin_take_its_batch_size(cli) -> None:
    args = ("analyze", "builtin:residual-mlp", "--arch-opt", "depth=2", "--format", "json", "--device", "cpu")
    report = ran(cli(*args, "--batches", "1", "--labels", "int:32:10"))
    assert report["run"]["loss_reason"] == "integer target: cross-entropy"
    result = cli(*args, "--batches", "1", "--labels", "int:5:10")
    assert result.exit_code == 2 and "the inputs have 32" in result.stderr


FAMILIES = Path(__file__).parent / "fixtures" / "families"


@pytest.mark.parametrize(
    ("family", "inputs"),
    [
        ("t5.py", ["int:2x32:500", "int:2x32:500"]),  # forward(input_ids, decoder_input_ids)
        ("whisper.py", ["float:2x20x32", "int:2x32:300"]),  # forward(mel, tokens)
        ("nf_resnet.py", ["float:2x3x32x32"]),  # a Conv2d subclass (weight-standardised) first
    ],
)
def test_first_try_form_infers_every_required_input(cli, family: str, inputs: list[str]) -> None:
    """No --input: a decoder's token argument gets token ids; a Conv2d subclass is still 2-D."""
    result = cli("analyze", str(FAMILIES / family), "--batch-size", "2", "--batches", "1", *JSON[:4])
    assert result.exit_code in (0, 1), result
    assert json.loads(result.stdout)["run"]["inputs"] == inputs
