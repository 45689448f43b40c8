"""Helpers the rules share about --steps training (not a rule: no finding id here)."""

from __future__ import annotations

import math

from gradcheck_cli.records.stats import Divergence, ProbeResult, TrainingHistory


def diverged_in_training(training: TrainingHistory | None) -> Divergence | None:
    """A divergence that training caused: not the model's own NaN on its first forward/backward.

    At step 1 the weights are the ones loaded, so a non-finite loss or gradient there is the
    model's (nonfinite-gradients says where); only an update that overflowed the weights counts.
    """
    if training is None or training.divergence is None:
        return None
    d = training.divergence
    first_pass_bad = d.forward_layer is not None or d.gradient_layers or not math.isfinite(d.loss)
    return None if d.step == 1 and first_pass_bad else d


def trained_state(probe: ProbeResult) -> bool:
    """The model judged is a trained one (--weights, --steps or --versus): advice should change the
    training recipe (learning rate, warm-up, clipping, weight decay), not the architecture, unless
    retraining is the fix, and then say so."""
    return probe.checkpoint is not None or probe.training is not None or probe.versus is not None


RETRAIN = "a build-time change: it needs retraining from scratch (or from an earlier checkpoint)"
"""Appended to build-time advice on a trained model."""
