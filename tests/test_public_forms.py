"""Issue 22's loader forms, each on a fixture of its own (tests/fixtures/loaders/): what a user
types for a public model's pattern, the exit code and the message or report it must give."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

LOADERS = Path(__file__).parent / "fixtures" / "loaders"
FAST = ("--device", "cpu", "--batches", "1")


@pytest.fixture(autouse=True)
def _in_loaders(monkeypatch) -> None:
    monkeypatch.chdir(LOADERS)


def report_of(result, code: int = 0) -> dict:
    assert result.exit_code == code, (result.exit_code, result.stderr[-800:])
    return json.loads(result.stdout)


def test_unannotated_config_is_built_from_the_declared_config_class_with_free_keywords(cli) -> None:
    result = cli(
        "analyze", "declared_config.py:Classifier", "--init", "num_hidden_layers=2",
        "--init", "decoder_start_token_id=0", "--input", "int:2x16:100", "--format", "json", *FAST,
    )  # fmt: skip
    init_args = report_of(result)["model"]["init_args"]
    assert init_args["config"]["num_hidden_layers"] == 2
    assert init_args["config"]["decoder_start_token_id"] == 0  # kept by the config's **kwargs
    assert init_args["config_set"] == ["decoder_start_token_id", "num_hidden_layers"]


def test_a_key_neither_config_nor_constructor_takes_is_still_an_error_for_a_strict_config(cli) -> None:
    result = cli(
        "analyze", "derived_config.py:Stack", "--init", "decoder_start_token_id=0", "--format", "json", *FAST
    )
    assert result.exit_code == 2 and "has no field 'decoder_start_token_id'" in result.stderr


def test_a_forward_failing_on_a_none_argument_names_it_and_sample_batch(cli) -> None:
    result = cli("analyze", "needs_grid.py", "--input", "2x16x16", *FAST)
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert "grid_thw was None: the forward's optional argument 'grid_thw' was not given" in result.stderr
    assert "hint: gradcheck cannot invent 'grid_thw': define sample_batch()" in result.stderr


def test_float_input_encoder_decoder_gets_labels_from_the_decoder_vocabulary(cli) -> None:
    result = cli(
        "analyze", "speech_seq2seq.py", "--input", "2x20x32", "--target-arg", "labels",
        "--loss", "output", "--format", "json", *FAST,
    )  # fmt: skip
    report = report_of(result)
    assert report["summary"]["errors"] == 0
    assert any(
        layer["name"] == "decoder_embed_tokens" and layer["grad_norm"] > 0 for layer in report["layers"]
    )


def test_language_model_target_arg_gets_targets_shaped_like_the_tokens(cli) -> None:
    """nanoGPT's GPT(idx, targets): without targets the head sees the last position only, (B, 1, V);
    the targets must still be (B, T) (the README form that worked in the previous release)."""
    result = cli(
        "analyze", "nano_lm.py", "--input", "int:2x16:64", "--target-arg", "targets",
        "--loss", "output", "--format", "json", *FAST,
    )  # fmt: skip
    report = report_of(result)
    assert report["summary"]["errors"] == 0
    assert report["run"]["loss"] == "output" and "targets=<targets>" in report["run"]["inputs"]


def test_blocks_in_a_module_list_pick_the_container(cli) -> None:
    result = cli("analyze", "block_list.py", "--input", "2x8x16", "--format", "json", *FAST)
    model = report_of(result)["model"]
    assert model["class"] == "Transformer" and model["found_by"] == "single-subclass"
