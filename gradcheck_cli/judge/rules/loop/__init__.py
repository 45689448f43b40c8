"""Loop rules: what the user's training loop did, from the monitor's loop record (LoopPoint).

They judge a training run's history (needs_history=True) and find nothing without the loop
record, which the monitor keeps when it is given the optimizer (`GradientMonitor(model,
optimizer=opt)`, the Lightning and Trainer callbacks).
"""

from __future__ import annotations

from gradcheck_cli.judge.rules.loop import (  # noqa: F401  (imported to register)
    accumulation_undivided,
    clip_after_step,
    eval_mode_training,
    frozen_mid_run,
    grad_scaler_skips,
    not_in_optimizer,
    training_stalled,
    zero_grad_missing,
)
