"""--try-fixes: each transform on its own, the runner's failure paths, and the measured outcomes.

Measured numbers are checked against relations that must hold (a fix that clears
vanishing raises the first-to-last ratio by orders of magnitude), never against goldens.
"""

from __future__ import annotations

import functools
import importlib
import json
import math
import sys
import textwrap
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from gradcheck_cli.config.analyze_config import build_config, values_from_file
from gradcheck_cli.records.findings import Finding, Severity, Suggestion
from gradcheck_cli.records.fixes import Measured, TriedFix
from gradcheck_cli.records.stats import LayerStats, ModelInfo, ProbeResult, RunInfo
from gradcheck_cli.render.json import JsonRenderer, to_document
from gradcheck_cli.render.json import tried_fix as to_json
from gradcheck_cli.render.terminal import TerminalRenderer
from gradcheck_cli.repair import activation, normalization, recurrent, reinit, residual
from gradcheck_cli.repair.base import NotApplicable, RepairContext, count_parameters
from gradcheck_cli.repair.clip import clip_value
from gradcheck_cli.repair.runner import try_one
from gradcheck_cli.run.pipeline import analyze_target

CONTRACT_KEYS = {"fix", "where", "applied", "note", "before", "after", "cleared", "parameters_delta"}


# -- helpers --------------------------------------------------------------------------------------
def _probe(layers: tuple[LayerStats, ...] = (), parameters: int = 0) -> ProbeResult:
    return ProbeResult(
        model=ModelInfo(
            class_name="M", parameters=parameters, trainable=parameters, device="cpu", dtype="float32"
        ),
        run=RunInfo(batches=1, steps=0, seed=0, loss="sum"),
        layers=layers,
    )


def _layer(name: str, grad_norm: float, weight_norm: float = 1.0) -> LayerStats:
    return LayerStats(
        name=name,
        type="Linear",
        index=0,
        parameters=1,
        trainable=True,
        grad_norm=grad_norm,
        weight_norm=weight_norm,
        grad_weight_ratio=grad_norm / weight_norm,
        act_grad_rms=1.0,
        act_grad_norm=1.0,
        zero_grad_fraction=0.0,
        nonfinite=0,
    )


def _finding(fix: str = "residual") -> Finding:
    return Finding(
        id="vanishing-gradients",
        severity=Severity.ERROR,
        layers=(),
        message="m",
        suggestions=(Suggestion(fix=fix, text="do it by hand"),),  # type: ignore[arg-type]
    )


def _context(*inputs: torch.Tensor) -> RepairContext:
    def run_forward(model: nn.Module) -> Any:
        return model(*inputs)

    def run_backward(model: nn.Module) -> None:
        out = model(*inputs)
        (out[0] if isinstance(out, tuple) else out).pow(2).sum().backward()

    return RepairContext(
        run_forward=run_forward, run_backward=run_backward, before=_probe(), finding=_finding()
    )


def _mlp(depth: int, width: int, act: Callable[[], nn.Module] = nn.Sigmoid) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), act()]
    return nn.Sequential(*layers, nn.Linear(width, 3))


# -- gru / lstm -----------------------------------------------------------------------------------
class PassesHidden(nn.Module):
    """Written for nn.RNN: passes h0 and reads the returned h as a tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(4, 6, num_layers=2, batch_first=True)
        self.head = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = torch.zeros(2, x.shape[0], 6)
        _, h = self.rnn(x, h0)
        return self.head(h[-1])


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_recurrent_swap_keeps_sizes_and_interface(cell: str) -> None:
    torch.manual_seed(0)
    model, x = PassesHidden(), torch.randn(3, 5, 4)
    transform = recurrent.to_gru if cell == "gru" else recurrent.to_lstm
    change = transform(model, _context(x))
    rnn = change.model.rnn
    assert isinstance(rnn, nn.GRU if cell == "gru" else nn.LSTM)
    assert (rnn.input_size, rnn.hidden_size, rnn.num_layers, rnn.batch_first) == (4, 6, 2, True)
    assert torch.all(rnn.bias_ih_l1[6:12] == recurrent.GATE_BIAS)
    assert change.model(x).shape == (3, 2)


def test_recurrent_swap_without_rnn_is_not_applicable() -> None:
    with pytest.raises(NotApplicable, match="no nn.RNN"):
        recurrent.to_gru(_mlp(2, 4), _context(torch.randn(2, 4)))


# -- activation -----------------------------------------------------------------------------------
def test_activation_swap_he_initialises_the_layers_before() -> None:
    torch.manual_seed(0)
    model = _mlp(4, 256)
    change = activation.to_relu(model, _context(torch.randn(8, 256)))
    kinds = [type(m) for m in change.model]
    assert nn.Sigmoid not in kinds and kinds.count(nn.ReLU) == 4
    for layer in list(change.model)[0:8:2]:
        assert layer.weight.std().item() == pytest.approx(math.sqrt(2 / 256), rel=0.05)
        assert torch.all(layer.bias == 0)
    head = list(change.model)[-1]
    assert head.weight.std().item() < 0.5 * math.sqrt(2 / 256)  # the head keeps its init


def test_activation_swap_without_sigmoid_is_not_applicable() -> None:
    with pytest.raises(NotApplicable, match="Sigmoid/Tanh"):
        activation.to_relu(_mlp(2, 4, nn.ReLU), _context(torch.randn(2, 4)))


# -- batchnorm / layernorm ------------------------------------------------------------------------
def test_norms_go_after_each_stack_layer_but_the_head() -> None:
    model = _mlp(3, 8)
    change = normalization.add_batchnorm(model, _context(torch.randn(4, 8)))
    kinds = [type(m).__name__ for m in change.model]
    assert kinds.count("BatchNorm1d") == 3
    assert kinds[-1] == "Linear" and kinds[1] == "BatchNorm1d"
    assert count_parameters(change.model) - count_parameters(_mlp(3, 8)) == 3 * 2 * 8


class LoopOverList(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Linear(8, 8) for _ in range(3))
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = torch.sigmoid(block(x))
        return self.head(x)


class DataDependent(LoopOverList):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = torch.sigmoid(block(x)) if x.sum() > 0 else block(x)
        return self.head(x)


def test_module_list_loops_are_normalised_through_fx() -> None:
    x = torch.randn(4, 8)
    change = normalization.add_layernorm(LoopOverList(), _context(x))
    norms = [m for m in change.model.modules() if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 3 and "torch.fx" in change.note
    assert change.model(x).shape == (4, 2)


def test_untraceable_forward_says_so() -> None:
    with pytest.raises(NotApplicable, match="torch.fx could not trace"):
        normalization.add_layernorm(DataDependent(), _context(torch.randn(4, 8)))


def test_batchnorm_skips_linear_on_sequences() -> None:
    seq = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    with pytest.raises(NotApplicable, match="output shapes"):
        normalization.add_batchnorm(seq, _context(torch.randn(2, 5, 8)))


# -- residual -------------------------------------------------------------------------------------
def test_residual_wraps_same_shape_blocks_only() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), *_mlp(3, 8)[:-1], nn.Linear(8, 2))
    x = torch.randn(2, 4)
    change = residual.add_skips(model, _context(x))
    wrapped = [m for m in change.model if isinstance(m, residual.Residual)]
    assert len(wrapped) == 3
    assert isinstance(change.model[0], nn.Linear)  # 4 -> 8 changes shape: no skip
    assert change.model(x).shape == (2, 2)


def test_residual_wraps_module_list_elements() -> None:
    model = LoopOverList()
    change = residual.add_skips(model, _context(torch.randn(4, 8)))
    assert all(isinstance(b, residual.Residual) for b in change.model.blocks)


def test_residual_without_same_shape_run_is_not_applicable() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    with pytest.raises(NotApplicable, match="same-shape"):
        residual.add_skips(model, _context(torch.randn(2, 4)))


# -- init -----------------------------------------------------------------------------------------
def test_init_brings_each_backward_gain_near_one() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(*(nn.Linear(32, 32, bias=False) for _ in range(6)))
    with torch.no_grad():
        for i, layer in enumerate(model):
            nn.init.orthogonal_(layer.weight, gain=0.2 if i % 2 else 3.0)  # gains 0.2 and 3, alternating
    context = _context(torch.randn(16, 32))
    change = reinit.unit_gain_init(model, context)
    norms = reinit.output_grad_norms(change.model, context, list(change.model))
    gains = [a / b for a, b in zip(norms[:-1], norms[1:], strict=True)]
    assert all(abs(math.log10(g)) < reinit.TOLERANCE for g in gains)


# -- clip -----------------------------------------------------------------------------------------
def test_clip_value_is_a_tenth_of_the_weight_norm() -> None:
    layers = tuple(_layer(f"l{i}", g, weight_norm=w) for i, (g, w) in enumerate(((100.0, 3.0), (1.0, 4.0))))
    max_norm, global_norm = clip_value(_probe(layers))  # type: ignore[misc]
    assert max_norm == pytest.approx(0.5)
    assert global_norm == pytest.approx(math.sqrt(100**2 + 1))


# -- runner failure paths -------------------------------------------------------------------------
class StubMeasurer:
    def __init__(self, model: nn.Module, fail: bool) -> None:
        self.model, self.fail = model, fail

    def fresh_copy(self) -> nn.Module:
        return self.model

    def run_forward(self, model: nn.Module) -> Any:
        return model(torch.randn(2, 8))

    def run_backward(self, model: nn.Module) -> None:
        model(torch.randn(2, 8)).sum().backward()

    def measure(self, model: nn.Module) -> tuple[ProbeResult, tuple[Finding, ...]]:
        if self.fail:
            raise RuntimeError("Expected more than 1 value per channel")
        return _probe(), ()


def test_a_fix_that_does_not_fit_is_reported_not_raised() -> None:
    finding = _finding("residual")
    tried = try_one(
        finding, finding.suggestions[0], (finding,), _probe(), StubMeasurer(nn.Linear(8, 2), False)
    )
    assert not tried.applied and tried.after is None
    assert "same-shape" in tried.note and "do it by hand" in tried.note


def test_a_changed_model_that_fails_to_run_is_reported_not_raised() -> None:
    finding = _finding("batchnorm")
    tried = try_one(finding, finding.suggestions[0], (finding,), _probe(), StubMeasurer(_mlp(2, 8), True))
    assert not tried.applied and "failed to run: RuntimeError" in tried.note


def test_fix_without_transform_keeps_the_suggestion() -> None:
    finding = _finding("lr")
    tried = try_one(finding, finding.suggestions[0], (finding,), _probe(), StubMeasurer(_mlp(1, 8), False))
    assert not tried.applied and "do it by hand" in tried.note


def test_json_entry_has_the_contract_fields() -> None:
    before = Measured(findings=("vanishing-gradients",), ratio=1e-9)
    entry = to_json(
        TriedFix(
            fix="gru", where="m.py:9", applied=True, note="n", before=before, after=replace(before, ratio=0.4)
        )
    )
    assert set(entry) >= CONTRACT_KEYS and entry["after"] == {
        "findings": ["vanishing-gradients"],
        "ratio": 0.4,
    }


# -- measured on the built-ins --------------------------------------------------------------------
SMALL = {
    "sigmoid-mlp": {"depth": 12, "width": 32},
    "sigmoid-cnn": {"depth": 6, "channels": 4, "size": 6, "batch": 4},
    "vanilla-rnn": {"seq_len": 40, "hidden": 32},
}


def _analyze(target: str, **flags: Any) -> Any:
    return analyze_target(build_config(target, {"try_fixes": True, "batches": 2, **flags}, {}))


@functools.cache
def _fixed_report(name: str) -> Any:
    """One measured run per built-in, shared by the tests that read it."""
    return _analyze(f"builtin:{name}", arch_opts=SMALL[name])


@pytest.mark.parametrize("name", sorted(SMALL))
def test_a_tried_fix_clears_the_error_by_two_orders(name: str) -> None:
    report = _fixed_report(name)
    expected = "vanishing-through-time" if name == "vanilla-rnn" else "vanishing-gradients"
    assert [f.id for f in report.findings if f.severity is Severity.ERROR] == [expected]
    fixes = to_document(report)["fixes"]
    assert fixes and all(set(entry) >= CONTRACT_KEYS for entry in fixes)
    winners = [e for e in fixes if expected in e["cleared"]]
    assert winners, fixes
    for entry in winners:
        assert entry["applied"] and expected not in entry["after"]["findings"]
        assert entry["after"]["ratio"] >= 100 * entry["before"]["ratio"]
    json.loads(JsonRenderer().render(report))  # NaN-free, valid JSON
    text = TerminalRenderer(width=100).render(report)
    assert "tried fixes" in text and winners[0]["fix"] in text


def test_vanilla_rnn_gated_swaps_add_the_gate_parameters() -> None:
    by_fix = {e["fix"]: e for e in to_document(_fixed_report("vanilla-rnn"))["fixes"]}
    rnn_params = 32 * (16 + 32) + 2 * 32  # nn.RNN(16, 32): one gate
    assert by_fix["gru"]["parameters_delta"] == 2 * rnn_params
    assert by_fix["lstm"]["parameters_delta"] == 3 * rnn_params
    assert not by_fix["clip"]["applied"] and by_fix["clip"]["max_norm"] > 0


def test_healthy_model_tries_nothing_and_says_so() -> None:
    report = _analyze("builtin:residual-mlp", arch_opts={"depth": 3, "width": 16})
    assert report.summary.status == "healthy" and to_document(report)["fixes"] == []
    assert "tried nothing: no error findings" in TerminalRenderer(width=100).render(report)
    assert json.loads(JsonRenderer().render(report))["fixes"] == []


USER_MODEL = """
    import torch
    from torch import nn

    torch.manual_seed(0)
    layers = []
    for _ in range(10):
        layers += [nn.Linear(16, 16), nn.Sigmoid()]
    model = nn.Sequential(*layers, nn.Linear(16, 4))
"""


def test_the_users_model_object_is_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "user_model_issue7.py").write_text(textwrap.dedent(USER_MODEL))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "user_model_issue7", raising=False)
    model = importlib.import_module("user_model_issue7").model
    tree, state = repr(model), {k: v.clone() for k, v in model.state_dict().items()}
    report = _analyze("user_model_issue7:model", inputs=None)
    assert any(e["applied"] for e in to_document(report)["fixes"])
    assert repr(model) == tree and model.state_dict().keys() == state.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    sys.modules.pop("user_model_issue7", None)


def test_config_file_key_fixes_turns_it_on(tmp_path: Path) -> None:
    values = values_from_file({"fixes": True}, tmp_path / "gradcheck.yaml")
    assert build_config("builtin:residual-mlp", {}, values).try_fixes is True


def test_cli_flag_adds_the_fixes_section(cli: Any) -> None:
    result = cli(
        "analyze",
        "builtin:vanilla-rnn",
        "--arch-opt",
        "seq_len=20",
        "--arch-opt",
        "hidden=16",
        "--batches",
        "1",
        "--try-fixes",
        "--format",
        "json",
    )
    assert result.exit_code == 1, result
    fixes = json.loads(result.stdout)["fixes"]
    assert [e["fix"] for e in fixes] == ["gru", "lstm", "clip"]


# -- --try-fixes acts on the findings after the config's policy -----------------------------------
def _saturating_tanh(scale: float) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 4))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    return model


def _tried_under_policy(model: nn.Module, severity: dict[str, str]) -> Any:
    from gradcheck_cli.config.specs import parse_input, parse_target
    from gradcheck_cli.load.target import LoadedModel
    from gradcheck_cli.run.pipeline import analyze_loaded

    config = build_config(
        "builtin:sigmoid-mlp", {"try_fixes": True, "batches": 1, "inputs": (parse_input("8x16"),)}, {}
    )
    config = replace(config, target=parse_target("builtin:sigmoid-mlp"), severity=severity)
    return analyze_loaded(config, LoadedModel(module=model, found_by="explicit", source=None))


def test_a_config_turning_the_error_off_means_nothing_is_tried() -> None:
    report = _tried_under_policy(_saturating_tanh(25.0), {"saturated-activations": "off"})
    assert report.findings == () and report.fixes == ()


def test_a_config_raising_a_warning_to_error_means_its_fixes_are_tried() -> None:
    plain = _tried_under_policy(_saturating_tanh(6.0), {})
    assert [f.severity for f in plain.findings] == [Severity.WARNING] and plain.fixes == ()
    raised = _tried_under_policy(_saturating_tanh(6.0), {"saturated-activations": "error"})
    assert [f.severity for f in raised.findings] == [Severity.ERROR]
    assert raised.fixes and {t.fix for t in raised.fixes} >= {"layernorm", "init"}
    assert all(t.finding == "saturated-activations" for t in raised.fixes)
