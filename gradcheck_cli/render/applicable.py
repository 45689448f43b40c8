"""Which rules could not fire on a run, and why: a JUnit report shows them as skipped (as pytest
shows a test whose condition does not hold), not as passed."""

from __future__ import annotations

from collections.abc import Callable

from gradcheck_cli.records.report import Report


def _no_activation(family: str, names: str) -> Callable[[Report], str | None]:
    def check(report: Report) -> str | None:
        if any(
            a.family == family or (family == "sigmoid" and a.family == "tanh") for a in report.activations
        ):
            return None
        return f"no {names} activations found in the model"

    return check


def _no_recurrent(report: Report) -> str | None:
    return None if report.through_time else "no recurrent layer to measure through time"


# Rule id -> why it did not apply to this run (None: it applied).
_CONDITIONS: dict[str, Callable[[Report], str | None]] = {
    "fp16-underflow": lambda r: None if r.model.dtype == "float16" else f"a {r.model.dtype} run, not float16",
    "vanishing-through-time": _no_recurrent,
    "exploding-through-time": _no_recurrent,
    "dead-units": _no_activation("relu", "ReLU-family"),
    "saturated-activations": _no_activation("sigmoid", "sigmoid or tanh"),
    "baseline-regression": lambda r: None if r.baseline is not None else "no --baseline given",
    "training-divergence": lambda r: None if r.run.steps else "no training steps (--steps 0)",
    "attention-collapse": lambda r: (
        None if r.attention else "no attention (MultiheadAttention, scaled_dot_product_attention)"
    ),
    "saturated-gates": lambda r: None if r.gate_saturation else "no nn.LSTM or nn.GRU in the model",
    "update-ratio": lambda r: None if r.run.steps else "no training steps (--steps 0)",
    "units-died-in-training": lambda r: None if r.versus is not None else "no reference state (--versus)",
    "weight-norm-change": lambda r: None if r.versus is not None else "no reference state (--versus)",
}


def not_applicable(report: Report, rule_id: str) -> str | None:
    """Why `rule_id` could not fire on this report's run, or None when it could."""
    condition = _CONDITIONS.get(rule_id)
    return condition(report) if condition else None
