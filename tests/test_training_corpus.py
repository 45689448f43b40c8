"""The training-failure corpus (tests/fixtures/corpus/): its ground truths, checked in plain
PyTorch on short runs, and gradcheck's verdict on a broken run and its healthy twin.

The full scoring of every case in the three modes is benchmarks/training_corpus.py
(docs/training-corpus.md); these are the fast cases.
"""

from __future__ import annotations

import importlib
import json
import sys

import pytest

from tests.conftest import ROOT, run_cli

CORPUS = ROOT / "tests" / "fixtures" / "corpus"


@pytest.fixture(autouse=True)
def _corpus_on_path():
    sys.path.insert(0, str(CORPUS))
    yield


def _case(name: str):
    sys.path.insert(0, str(CORPUS))
    return importlib.import_module(name)


def test_graph_cut_truth_and_weights_verdict(tmp_path):
    """.detach() mid-model: plain PyTorch sees no gradient on fc1; gradcheck names fc1, the twin is clean."""
    from common import fit

    mod = _case("graph_cut")
    docs = {}
    for broken in (True, False):
        ck = tmp_path / f"ck-{broken}.pt"
        trace = fit(mod, broken, 5, checkpoint=ck)
        truth = mod.truth(trace)
        assert (truth is not None) is broken
        assert (trace.steps[-1].updates["fc1"] == 0.0) is broken
        target = f"{CORPUS / 'graph_cut.py'}:Net(broken={broken})"
        result = run_cli("analyze", target, "--weights", str(ck), "--versus", "init", "--format", "json")
        docs[broken] = json.loads(result.stdout)
    assert truth is None
    broken_ids = {f["id"]: f for f in docs[True]["findings"]}
    assert "fc1" in broken_ids["no-gradient"]["layers"]
    assert [f for f in docs[False]["findings"] if f["severity"] in ("warning", "error")] == []


def test_loop_bug_truths_in_plain_pytorch():
    """zero_grad forgotten: .grad is the running sum; a parameter outside the optimizer never
    moves although it has a gradient; per-batch StepLR stalls every update to exactly 0;
    accumulation without the division applies 8x the mean loss's gradient."""
    from common import fit

    zero = _case("zero_grad_forgotten")
    trace = fit(zero, True, 12)
    norms = trace.series("fc1")
    assert norms[-1] > 5 * norms[0]
    assert fit(zero, False, 12).series("fc1")[-1] < 3 * norms[0]

    missing = _case("missing_param")
    assert missing.truth(fit(missing, True, 3)).layer == "head"
    assert missing.truth(fit(missing, False, 3)) is None

    sched = _case("sched_per_batch")
    truth = sched.truth(fit(sched, True, 14))
    assert truth is not None and 5 <= truth.step <= 12
    assert sched.truth(fit(sched, False, 14)) is None

    accum = _case("accum_undivided")
    truth = accum.truth(fit(accum, True, 1))
    assert truth is not None and "8.0x" in truth.detail
    assert accum.truth(fit(accum, False, 1)) is None


def test_nonfinite_truth_names_the_first_module_in_forward_order():
    """nan_div: the standardisation divides 0 by 0 once a unit is dead on a whole batch; the
    first non-finite output in forward order is that module, not the head after it."""
    from common import fit

    mod = _case("nan_div")
    truth = mod.truth(fit(mod, True, 8))
    assert truth is not None and truth.step < 8
    assert "forward std" in truth.detail
    assert mod.truth(fit(mod, False, 8)) is None


def test_scoring_reads_kind_layer_step_and_cause():
    """The benchmark's scorer: a finding of the right id on the right layer at the right step."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import Truth
    from training_corpus import score

    mod = _case("missing_param")
    truth = Truth(step=0, layer="head", kind="not-in-optimizer")
    right = {
        "id": "not-in-optimizer",
        "severity": "error",
        "layers": ["head"],
        "message": "head is in no optimizer group",
        "step": 0,
    }
    symptom = {
        "id": "gradient-trend",
        "severity": "warning",
        "layers": ["head"],
        "message": "grows 241x",
        "step": 30,
    }
    assert score(mod, truth, [symptom], "monitor") | {"ids": None} == {
        "caught": True,
        "ids": None,
        "kind": False,
        "layer": False,
        "step": False,
        "cause": False,
        "lead": None,
    }
    scored = score(mod, truth, [symptom, right, right], "monitor")
    assert (scored["kind"], scored["layer"], scored["step"], scored["cause"]) == (True, True, True, True)
    assert score(mod, truth, [], "weights")["caught"] is False


def test_sigmoid_heatmap_head_in_its_tails_is_healthy(tmp_path):
    """A trained heatmap head whose sigmoid outputs sit in the tails (plain PyTorch: > 80% of them)
    is no warning or error, only an info; the twin with a saturated hidden sigmoid is still flagged."""
    from common import fit

    mod = _case("heatmap_head")
    findings = {}
    for broken in (False, True):
        ck = tmp_path / f"hm-{broken}.pt"
        trace = fit(mod, broken, 60, checkpoint=ck)
        if not broken:
            assert mod.tails(trace.model) > 0.8  # past the rule's 0.5: it fired before
        target = f"{CORPUS / 'heatmap_head.py'}:Net(broken={broken})"
        result = run_cli("analyze", target, "--weights", str(ck), "--format", "json")
        findings[broken] = json.loads(result.stdout)["findings"]
        assert result.exit_code == 0, result
    head = [f for f in findings[False] if f["id"] == "saturated-activations"]
    assert [f["severity"] for f in head] == ["info"] and head[0]["evidence"]["output_head"] is True
    assert [f["severity"] for f in findings[False] if f["severity"] != "info"] == []
    hidden = [f for f in findings[True] if f["id"] == "saturated-activations" and f["severity"] != "info"]
    assert hidden and hidden[0]["layers"] == ["conv1"]


def test_a_fine_tuned_head_grown_alone_is_not_a_weight_norm_warning(tmp_path):
    """Discriminative rates (backbone 1e-3, new head 0.1): plain PyTorch measures the head at more
    than 5x its init norm and the backbone near 1x: no finding. The twin whose backbone trains at
    a too-high rate grows fc1 past 5x too, and is warned, head included."""
    from common import fit

    mod = _case("finetune_head")
    docs, growth = {}, {}
    for broken in (False, True):
        ck = tmp_path / f"ft-{broken}.pt"
        trace = fit(mod, broken, 60, checkpoint=ck)
        growth[broken] = mod.growth(trace)
        target = f"{CORPUS / 'finetune_head.py'}:Net(broken={broken})"
        result = run_cli("analyze", target, "--weights", str(ck), "--versus", "init", "--format", "json")
        docs[broken] = {f["id"]: f for f in json.loads(result.stdout)["findings"]}
    assert growth[False]["head"] > 5 and growth[False]["fc1"] < 1.5
    assert "weight-norm-change" not in docs[False]
    assert growth[True]["fc1"] > 5
    assert "fc1" in docs[True]["weight-norm-change"]["evidence"]["grown"]


def test_a_head_gradient_falling_with_the_loss_is_not_a_trend(tmp_path):
    """The fine-tuned head's gradient falls more than tenfold as the loss does (plain PyTorch):
    cross-entropy's gradient shrinks with the loss; the monitor raises no gradient-trend."""
    from common import fit

    from gradcheck_cli.judge.run_verdict import build_run_report
    from gradcheck_cli.monitor.gradient_monitor import GradientMonitor

    mod = _case("finetune_head")
    log = tmp_path / "run.jsonl"
    trace = fit(mod, False, monitor_factory=lambda m: GradientMonitor(m, every=1, jsonl=log, callback=None))
    head, loss = trace.series("head"), [s.loss for s in trace.steps]
    median = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    assert median(head[-10:]) < median(head[:10]) / 10 and median(loss[-10:]) < median(loss[:10]) / 10
    report = build_run_report(log)
    serious = [f.id for f in report.trends if f.severity.value != "info"]
    serious += [d["id"] for _, d in report.log.logged if d["severity"] != "info"]
    assert "gradient-trend" not in serious


def test_steps_mode_runs_on_a_float16_checkpoint_with_a_grad_scaler(tmp_path):
    """--steps with the model file's train_step on a GradScaler run: the scaler's settling skips
    (plain PyTorch: its scale halves from 2^24) are skipped steps, not an exit 2."""
    from common import fit

    mod = _case("fp16_overflow")
    ck = tmp_path / "ck.pt"
    trace = fit(mod, False, 12, checkpoint=ck)
    assert trace.steps[-1].scale < 2.0**24  # the twin's own run skipped its first steps too
    target = f"{CORPUS / 'fp16_overflow.py'}:Net(broken=False)"
    result = run_cli("analyze", target, "--weights", str(ck), "--steps", "12", "--format", "json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [f["id"] for f in doc["findings"] if f["severity"] in ("warning", "error")] == []


def test_small_steps_at_the_end_of_a_schedule_are_not_an_update_ratio_warning(tmp_path):
    """StepLR stepped per epoch (the fix of sched_per_batch) has annealed the rate 0.1 -> 1e-4 by
    step 60 (plain PyTorch, from the checkpoint's param groups): --steps resumes there, the steps
    are small because the schedule made them so: an info, not a warning; the broken twin (stepped
    per batch, updates exactly 0) is still training-stalled."""
    import torch
    from common import fit

    mod = _case("sched_per_batch")
    docs = {}
    for broken in (False, True):
        ck = tmp_path / f"ck-{broken}.pt"
        fit(mod, broken, checkpoint=ck)
        target = f"{CORPUS / 'sched_per_batch.py'}:Net(broken={broken})"
        result = run_cli("analyze", target, "--weights", str(ck), "--steps", "20", "--format", "json")
        docs[broken] = json.loads(result.stdout)["findings"]
    (group,) = torch.load(tmp_path / "ck-False.pt")["optimizer"]["param_groups"]
    assert group["initial_lr"] == 0.1 and group["lr"] == pytest.approx(1e-4)
    healthy = [f for f in docs[False] if f["id"] == "update-ratio"]
    assert [f["severity"] for f in healthy] == ["info"] and healthy[0]["evidence"]["initial_lr"] == 0.1
    assert [f["id"] for f in docs[False] if f["severity"] in ("warning", "error")] == []
    assert "training-stalled" in {f["id"] for f in docs[True]}


def test_no_warmup_divergence_truth_and_monitor_spike():
    """Adam at 0.3 from step 0: plain PyTorch sees the loss pass 10x step 0's within three steps;
    the twin warmed up over 20 steps never does. The monitor's history names the spike."""
    from common import fit

    from gradcheck_cli.monitor.gradient_monitor import GradientMonitor

    mod = _case("no_warmup")
    monitors = []

    def factory(model):
        monitors.append(GradientMonitor(model, every=1, callback=None))
        return monitors[-1]

    trace = fit(mod, True, 12, monitor_factory=factory)
    truth = mod.truth(trace)
    assert truth is not None and 1 <= truth.step <= 3, truth
    assert trace.steps[truth.step].loss > 10 * trace.steps[0].loss
    assert mod.truth(fit(mod, False, 12)) is None
    found = {f.id: f for record in monitors[0].history for f in record.report.findings}
    assert found["warmup-missing"].evidence["step"] == truth.step
    assert found["warmup-missing"].evidence["lrs_at_first_step"] == [mod.LR]

    monitors.clear()
    fit(mod, False, 12, monitor_factory=factory)
    assert not [f for r in monitors[0].history for f in r.report.findings if f.id == "warmup-missing"]


@pytest.mark.slow
def test_attention_logit_growth_truth_in_plain_pytorch():
    """Without QK norm the attention logits pass 50 after the warm-up; with it they stay near 10."""
    from common import fit

    mod = _case("attn_logit_growth")
    truth = mod.truth(fit(mod, True, 70))
    assert truth is not None and truth.layer.startswith("blocks.") and truth.step < 70
    healthy = fit(mod, False, 70)
    assert mod.truth(healthy) is None
    assert max(mod.max_logit(s)[1] for s in healthy.steps) < 15
