"""Trend rules: they judge a training run's measured steps (ProbeResult.history), not one step.

Each is a rule file like the others (registered with needs_history=True); in a single analysis
there is no history and they find nothing.
"""

from __future__ import annotations

from gradcheck_cli.judge.rules.trends import (  # noqa: F401  (imported to register)
    dead_units_growing,
    grad_norm_spike,
    gradient_trend,
    loss_spike,
    nonfinite_first_layer,
    ratio_drift,
    warmup_missing,
)
