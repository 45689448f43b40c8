"""All finding rules. Adding a diagnosis is adding a module here and naming it below."""

from __future__ import annotations

from gradcheck_cli.judge.rules import (  # noqa: F401  (imported to register)
    attention_collapse,
    baseline_regression,
    dead_units,
    exploding_gradients,
    exploding_through_time,
    fp16_underflow,
    loop,
    lr_headroom_low,
    no_gradient,
    nonfinite_gradients,
    precision_overflow,
    precision_rounding,
    precision_underflow,
    saturated_activations,
    saturated_gates,
    training_divergence,
    trends,
    units_died_in_training,
    update_ratio,
    vanishing_gradients,
    vanishing_through_time,
    weight_norm_change,
    width_exponent,
    zero_gradient,
)
from gradcheck_cli.judge.rules.base import RuleSpec, registry


def all_rules() -> list[RuleSpec]:
    """The rules diagnosis runs on every probe result (the trend rules only join with a history)."""
    return [spec for spec in registry().values() if spec.stage is None and not spec.needs_history]


def every_rule() -> list[RuleSpec]:
    """All documented finding ids, including those a later stage makes (baseline-regression)."""
    return list(registry().values())


def trend_rules() -> list[RuleSpec]:
    """The rules that judge a training run's history (GradientMonitor, `gradcheck report`)."""
    return [spec for spec in registry().values() if spec.needs_history]


def get_rule(rule_id: str) -> RuleSpec | None:
    for spec in registry().values():
        if spec.id == rule_id or rule_id in spec.aliases:
            return spec
    return None
