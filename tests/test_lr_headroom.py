"""--lr-headroom: the limit against algebra (gradient descent on a quadratic), QK-norm on a small
GPT of our own, the per-head attention statistics against plain PyTorch, and the report."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradcheck_cli.config.analyze_config import AnalyzeConfig
from gradcheck_cli.config.specs import TargetRef
from gradcheck_cli.load.target import LoadedModel
from gradcheck_cli.measure.batches import normalize_batch
from gradcheck_cli.measure.head_attention import HeadWatch, head_stats
from gradcheck_cli.measure.lr_headroom import measure_headroom
from gradcheck_cli.measure.preparation import prepare
from gradcheck_cli.records.headroom import LrHeadroom
from gradcheck_cli.records.report import Report
from gradcheck_cli.render.html import HtmlRenderer
from gradcheck_cli.render.json import to_document
from gradcheck_cli.render.markdown import MarkdownRenderer
from gradcheck_cli.render.terminal import TerminalRenderer
from gradcheck_cli.run.pipeline import analyze_loaded


def _fixture_module(name: str) -> ModuleType:
    path = Path(__file__).parent / "fixtures" / "headroom" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"headroom_fixture_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


headroom_gpt = _fixture_module("gpt")

MULTIPLIERS = (1.0, 3.0, 10.0, 30.0)


def _config(**kw: object) -> AnalyzeConfig:
    return AnalyzeConfig(
        target=TargetRef(raw="m", kind="module", location="<python>"), lr_headroom=True, batches=1, **kw
    )  # type: ignore[arg-type]


def _loaded(model: nn.Module, **kw: object) -> LoadedModel:
    return LoadedModel(module=model, found_by="explicit", hooks_from="analyze()", source=None, **kw)  # type: ignore[arg-type]


def quadratic(curvatures: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs whose mean-squared-error Hessian (2/N) X^T X is diag(curvatures), and targets."""
    n = len(curvatures)
    x = torch.diag(torch.tensor(curvatures).sqrt()) * math.sqrt(n / 2)
    return x, x @ torch.ones(n, 1)


def _quadratic_report(eta_lambda: float, multipliers: tuple[float, ...] = MULTIPLIERS) -> Report:
    """Linear regression trained by plain gradient descent at lr = eta_lambda / lambda_max."""
    curvatures = [2.0, 1.0, 0.4, 0.1]
    x, y = quadratic(curvatures)
    torch.manual_seed(0)
    model = nn.Linear(4, 1, bias=False)
    lr = eta_lambda / max(curvatures)
    config = _config(loss="mse", optimizer="sgd", lr=lr, headroom_multipliers=multipliers)
    return analyze_loaded(config, _loaded(model), batches=[normalize_batch((x, y))])


def predicted_limit(eta_lambda: float, multipliers: tuple[float, ...]) -> float | None:
    """Gradient descent on a quadratic diverges when lr * lambda_max > 2: the first multiplier above."""
    return next((m for m in multipliers if m * eta_lambda > 2), None)


@pytest.mark.parametrize(
    ("eta_lambda", "multipliers"),
    [
        (0.3, MULTIPLIERS),  # diverges from 6.7x: between 3 and 10
        (0.1, MULTIPLIERS),  # from 20x: between 10 and 30
        (0.75, (1.0, 2.0, 2.5, 3.0, 4.0)),  # from 2.67x: between 2.5 and 3
    ],
)
def test_quadratic_breaks_at_the_multiplier_algebra_predicts(
    eta_lambda: float, multipliers: tuple[float, ...]
) -> None:
    expected = predicted_limit(eta_lambda, multipliers)
    below = max(m for m in multipliers if expected is not None and m < expected)
    assert expected is not None and below * eta_lambda < 2 < expected * eta_lambda
    h = _quadratic_report(eta_lambda, multipliers).lr_headroom
    assert h is not None
    assert h.limit == expected
    assert not any(run.trips for run in h.runs if run.multiplier < expected)
    broken = next(run for run in h.runs if run.multiplier == expected)
    assert broken.loss[-1] > 10 * broken.loss[0] or broken.nonfinite_step is not None


def test_no_limit_when_every_multiplier_is_stable() -> None:
    report = _quadratic_report(0.05)  # 30x gives lr * lambda_max = 1.5 < 2
    assert report.lr_headroom is not None and report.lr_headroom.limit is None
    assert not [f for f in report.findings if f.id == "lr-headroom-low"]


def test_low_headroom_is_a_finding_and_in_the_json() -> None:
    report = _quadratic_report(0.8)  # breaks at 3x (2.4 > 2)
    found = [f for f in report.findings if f.id == "lr-headroom-low"]
    assert len(found) == 1 and found[0].severity.value == "warning"
    assert found[0].evidence["limit"] == 3.0
    doc = json.loads(json.dumps(to_document(report), allow_nan=False))
    section = doc["lr_headroom"]
    assert section["multipliers"] == [1.0, 3.0, 10.0, 30.0]
    assert section["limit"] == 3.0
    assert section["first_instrument"] in ("loss", "logit_rms")
    assert section["layer"] is not None
    assert [run["broke"] for run in section["runs"]] == [False, True, True, True]
    assert section["runs"][0]["per_step"]["update_ratio"]
    assert "breaks at 3x" in MarkdownRenderer().render(report)
    assert "lr headroom: breaks at 3x" in TerminalRenderer(width=120).render(report)
    html = HtmlRenderer().render(report)
    assert "Learning-rate headroom" in html and "loss at 3x (broke)" in html


def test_the_current_rate_breaking_is_an_error() -> None:
    report = _quadratic_report(2.5)  # already past 2 at 1x: the loss grows from step 1
    found = [f for f in report.findings if f.id == "lr-headroom-low"]
    assert found and found[0].severity.value == "error" and found[0].evidence["limit"] == 1.0


def test_the_model_is_back_in_its_initial_state() -> None:
    x, y = quadratic([2.0, 1.0])
    torch.manual_seed(0)
    model = nn.Linear(2, 1, bias=False)
    before = model.weight.detach().clone()
    prepared = prepare(
        _config(loss="mse", optimizer="sgd", lr=0.5), _loaded(model), [normalize_batch((x, y))]
    )
    measure_headroom(prepared)
    assert torch.equal(model.weight, before)


def test_head_stats_match_plain_pytorch() -> None:
    torch.manual_seed(0)
    q, k = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 5, 4)
    causal = torch.ones(5, 5, dtype=torch.bool).triu(1)
    logits = (q @ k.transpose(-2, -1)) / 2.0
    expected_max = logits.masked_fill(causal, 0.0).abs().amax(dim=(0, 2, 3))
    probs = logits.masked_fill(causal, -math.inf).softmax(-1)
    seen = (~causal).sum(-1)  # keys each query may see
    ent = -(probs * probs.clamp_min(1e-30).log()).sum(-1) / seen.float().log()
    expected_entropy = ent[:, :, 1:].mean(dim=(0, 2))  # the first query sees one key only
    mask = torch.zeros(5, 5).masked_fill(causal, -math.inf)
    got = head_stats(q, k, mask, None)
    torch.testing.assert_close(got[:, 0], expected_max)
    torch.testing.assert_close(got[:, 1], expected_entropy)


def test_head_watch_reads_multihead_attention_and_sdpa() -> None:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    x = torch.randn(3, 6, 8)
    _, weights = mha(x, x, x, need_weights=True, average_attn_weights=False)  # (batch, heads, L, S)
    entropy = -(weights * weights.clamp_min(1e-30).log()).sum(-1) / math.log(6)
    with HeadWatch(mha) as watch, watch.forward():
        mha(x, x, x, need_weights=False)
    got = watch.take()[""]
    torch.testing.assert_close(got[:, 1], entropy.mean(dim=(0, 2)), rtol=1e-4, atol=1e-5)

    class Sdpa(nn.Module):
        def forward(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
            return F.scaled_dot_product_attention(q, k, k, is_causal=True)

    model = nn.Sequential(Sdpa())
    q, k = torch.randn(1, 2, 4, 8), torch.randn(1, 2, 4, 8)
    with HeadWatch(model) as watch, watch.forward():
        model[0](q, k)
    sites = watch.take()
    assert list(sites) == ["0:sdpa"]
    largest = ((q @ k.transpose(-2, -1)) / math.sqrt(8)).tril().abs().amax(dim=(0, 2, 3))
    torch.testing.assert_close(sites["0:sdpa"][:, 0], largest)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Two threads on a loaded two-core machine are many times slower for a model this small."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gpt_headroom(qk_norm: bool, seed: int) -> LrHeadroom:
    """A one-block GPT of our own (width 32, 2 heads) with AdamW at 3e-3, 20 steps per multiplier."""
    torch.manual_seed(seed)
    model = headroom_gpt.HeadroomGPT(width=32, depth=1, heads=2, qk_norm=qk_norm, lr=3e-3)
    seq = headroom_gpt.tokens(8, 16, torch.Generator().manual_seed(seed))
    config = _config(seed=seed, headroom_steps=20)
    loaded = _loaded(model, optimizer_hook=headroom_gpt.build_optimizer)
    batch = normalize_batch({"idx": seq[:, :-1], "targets": seq[:, 1:]})
    return measure_headroom(prepare(config, loaded, [batch]))


def _rank(limit: float | None) -> float:
    return math.inf if limit is None else limit


def test_qk_norm_keeps_the_attention_logits_from_breaking_first(one_thread: None) -> None:
    plain, normed = gpt_headroom(False, 4), gpt_headroom(True, 4)
    assert plain.limit == 10.0 and plain.first_instrument in ("attention_entropy", "attention_max_logit")
    assert _rank(normed.limit) > _rank(plain.limit)
    assert normed.first_instrument not in ("attention_entropy", "attention_max_logit")


@pytest.mark.slow
def test_qk_norm_has_at_least_the_headroom_over_five_seeds(one_thread: None) -> None:
    for seed in range(5):
        plain, normed = gpt_headroom(False, seed), gpt_headroom(True, seed)
        assert plain.limit is not None
        assert _rank(normed.limit) >= _rank(plain.limit), seed


@pytest.mark.parametrize(
    ("value", "words"),
    [("0,3", "'0' is not a positive finite number"), ("3", "needs 2 to 8 distinct multipliers")],
)
def test_bad_multipliers_are_exit_2_before_the_work(value: str, words: str, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "gradcheck_cli", "analyze", "builtin:residual-mlp", "--lr-headroom"]
    result = subprocess.run(
        [*command, "--headroom-multipliers", value], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 2
    assert words in result.stderr and "Traceback" not in result.stderr
