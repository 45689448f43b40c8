"""--loss auto: what it chooses for each kind of output, and why; and the outputs that give no loss."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from gradcheck_cli.measure.losses import compute_loss
from gradcheck_cli.records.errors import LossError

WILD = Path(__file__).parent / "fixtures" / "wild"
JSON = ("--format", "json", "--device", "cpu", "--batches", "1", "--batch-size", "4")


def auto(output, target=None, loss_fn=None, mode="auto"):
    return compute_loss(output, mode, target, loss_fn, torch.Generator().manual_seed(0))


def leaf(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1)).requires_grad_(True)


@dataclass
class Output:
    loss: torch.Tensor | None
    logits: torch.Tensor


def test_own_scalar_loss_first() -> None:
    loss = (leaf(3) ** 2).sum()
    for output in (loss, (leaf(2, 5), loss), {"loss": loss, "logits": leaf(2, 5)}, Output(loss, leaf(2, 5))):
        choice = auto(output)
        assert choice.name == "output" and "own scalar loss" in choice.reason
        assert torch.equal(choice.value, loss.float())


def test_logits_with_none_loss_fall_back_to_cross_entropy() -> None:
    choice = auto((leaf(2, 7, 11), None))  # GPT without targets: (logits, None)
    assert choice.name == "ce" and "cross-entropy" in choice.reason


def test_loss_fn_from_the_file() -> None:
    choice = auto(leaf(4, 2), torch.zeros(4, 2), loss_fn=lambda out, target: (out - target).abs().mean())
    assert choice.name == "loss_fn" and "loss_fn()" in choice.reason


def test_log_probabilities_get_nll() -> None:
    choice = auto(torch.log_softmax(leaf(8, 5), dim=1))
    assert choice.name == "nll" and "log-sum-exp" in choice.reason


def test_per_pixel_logits_classes_in_dimension_one() -> None:
    output = leaf(2, 3, 4, 4)
    choice = auto(output)
    assert choice.name == "ce"
    choice.value.backward()
    assert output.grad is not None and output.grad.shape == (2, 3, 4, 4)
    # per pixel, the gradient over classes sums to zero (softmax minus one-hot): dimension 1 is the class
    assert output.grad.sum(dim=1).abs().max() < 1e-6


@pytest.mark.parametrize("shape", [(6,), (6, 1)])
def test_probability_per_sample_gets_bce(shape) -> None:
    choice = auto(torch.sigmoid(leaf(*shape)))
    assert choice.name == "bce" and "probability" in choice.reason


def test_unbounded_regression_gets_mse() -> None:
    choice = auto(leaf(6, 1) * 10)
    assert choice.name == "mse" and "regression" in choice.reason


def test_no_floating_point_output_is_a_loss_error() -> None:
    with pytest.raises(LossError, match="no floating-point tensor"):
        auto(leaf(4, 3).argmax(dim=1))


def test_loss_output_without_a_loss_says_how_to_pass_targets() -> None:
    with pytest.raises(LossError) as info:
        auto((leaf(2, 5), None), mode="output")
    assert "--target-arg" in (info.value.hint or "")


# --------------------------------------------------------------------------- through the CLI


def test_cli_reports_loss_choice_and_reason(cli, monkeypatch) -> None:
    import json

    monkeypatch.chdir(WILD)
    report = json.loads(cli("analyze", "mnist_logsoftmax.py", *JSON).stdout)
    assert report["run"]["loss"] == "nll"
    assert "log-probabilities" in report["run"]["loss_reason"]


def test_cli_output_gives_no_usable_loss(cli, monkeypatch) -> None:
    monkeypatch.chdir(WILD)
    result = cli("analyze", "argmax_output.py", *JSON)
    assert result.exit_code == 2 and result.stdout == "" and "Traceback" not in result.stderr
    assert "no floating-point tensor" in result.stderr and "loss_fn" in result.stderr


def test_cli_loss_output_without_targets(cli, monkeypatch) -> None:
    monkeypatch.chdir(WILD)
    result = cli("analyze", "gpt_config.py:GPT", "--loss", "output", *JSON)
    assert result.exit_code == 2 and result.stdout == "" and "Traceback" not in result.stderr
    assert "returned no scalar loss" in result.stderr and "--target-arg" in result.stderr
