"""lr-headroom-low: under --lr-headroom, the learning rate is within a few times of breaking."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import AppliesWhen, rule
from gradcheck_cli.judge.rules.profile import sig
from gradcheck_cli.records.findings import Finding, Severity, Suggestion
from gradcheck_cli.records.headroom import LrHeadroom
from gradcheck_cli.records.stats import ProbeResult


@dataclass(frozen=True, slots=True)
class HeadroomLimits:
    max_limit: float = 3.0
    """Fire when the smallest multiplier that broke is at most this (the rate is within 3x of breaking)."""


@rule(
    id="lr-headroom-low",
    severity=Severity.ERROR,
    fixes=("lr", "warmup", "clip"),
    limits=HeadroomLimits,
    applies_when=AppliesWhen(
        lambda r: r.lr_headroom is not None, "no learning-rate headroom measured (--lr-headroom)"
    ),
)
def lr_headroom_low(probe: ProbeResult, limits: HeadroomLimits) -> Iterator[Finding]:
    """The learning rate is within a few times of the rate at which training breaks.

    ## What it detects
    Under `--lr-headroom` the tool takes k steps (`--headroom-steps`, default 30) on one fixed
    batch at the learning rate times each of `--headroom-multipliers` (default 1, 3, 10, 30),
    each from the same initial state and seed, with the optimizer `--steps` would use. A run
    *breaks* when its loss goes non-finite or above 10 times its first value, or when an
    instrument grows super-linearly: its excursion over the k steps exceeds 3 times what linear
    growth from the reference run (the smallest multiplier) predicts, and a floor. The
    instruments: each layer's update/weight ratio, each attention head's largest logit and its
    entropy (nn.MultiheadAttention and F.scaled_dot_product_attention), the output-logit RMS and
    the log-partition (mean logsumexp of the logits). docs/lr-headroom.md defines each excursion.
    This finding fires when the smallest multiplier that broke is at most `max_limit`.

    ## Why it matters
    Small-model proxies at high learning rates show the instabilities of large runs (attention
    logits growing without bound, output logits drifting): a rate within a few times of its
    breaking point leaves no margin for a larger model, a longer run, or a bad batch. A run
    that breaks at 1x breaks at the rate you train with.

    ## Evidence
    `limit` (the smallest multiplier that broke), `limit_lr`, `lr` (the base rate), `optimizer`,
    `first_instrument`, `layer` and `step` (what broke first, where, and when), `multipliers`,
    `steps`, `max_limit`, and `suggested_lr` (the largest rate tried that did not break, divided
    by 3: a margin of at least 3x).

    ## Thresholds
    `max_limit` = 3: the rate is within 3x of breaking. An error when the reference run itself
    broke (the current rate diverges), a warning otherwise.

    ## Fixes
    lr: lower the learning rate to the suggested value, or make the model tolerate it: QK-norm
    (normalise q and k before the dot product) for attention-logit growth, z-loss (a penalty of
    about 1e-4 times logsumexp(logits)^2) for output-logit drift.
    warmup: ramp the learning rate up over the first steps.
    clip: clip the total gradient norm (--clip measures the headroom with clipping).

    ## Example
    A linear regression trained by plain SGD at 0.8 / lambda_max (the largest curvature of its
    loss) breaks at 3x, where 2.4 / lambda_max passes gradient descent's limit of 2 / lambda_max,
    and this fires; at 0.3 / lambda_max it breaks at 10x and does not (tests/test_lr_headroom.py).
    """
    h = probe.lr_headroom
    if h is None or h.limit is None or h.limit > limits.max_limit:
        return
    severity = Severity.ERROR if h.limit <= h.multipliers[0] else Severity.WARNING
    suggested = _suggested_lr(h)
    layer = h.layer if h.layer not in (None, "loss") else None
    where = f" at {layer}" if layer else ""
    yield Finding(
        id="lr-headroom-low",
        severity=severity,
        layers=(layer.split(":")[0],) if layer else (),
        message=(
            f"The learning rate {h.lr:g} breaks at {h.limit:g}x ({sig(h.lr * h.limit):g}): "
            f"{_what(h.first_instrument)}{where} by step {h.step} of {h.steps} on one batch "
            f"(headroom at most {h.limit:g}x; {limits.max_limit:g}x or less is reported)."
        ),
        evidence={
            "limit": h.limit,
            "limit_lr": sig(h.lr * h.limit),
            "lr": h.lr,
            "optimizer": h.optimizer,
            "first_instrument": h.first_instrument,
            "layer": h.layer,
            "step": h.step,
            "multipliers": list(h.multipliers),
            "steps": h.steps,
            "max_limit": limits.max_limit,
            "suggested_lr": suggested,
        },
        suggestions=_suggestions(h, suggested),
    )


def _what(instrument: str | None) -> str:
    return {
        "loss": "the loss diverged",
        "update_ratio": "the update/weight ratio grew super-linearly",
        "attention_max_logit": "the largest attention logit grew super-linearly",
        "attention_entropy": "the attention entropy collapsed",
        "logit_rms": "the output logits grew super-linearly",
        "log_partition": "the log-partition of the output logits drifted",
    }.get(instrument or "", "an instrument broke")


def _suggested_lr(h: LrHeadroom) -> float:
    """The largest rate tried that did not break, over 3 (a 3x margin); the base rate over 10 if
    even the reference broke."""
    fine = [run.multiplier for run in h.runs if not run.trips]
    if not fine:
        return sig(h.lr / 10)
    return sig(h.lr * max(fine) / 3)


def _suggestions(h: LrHeadroom, suggested: float) -> tuple[Suggestion, ...]:
    out = [
        Suggestion(fix="lr", text=f"lower the learning rate from {h.lr:g} to about {suggested:g}", where=None)
    ]
    if h.first_instrument in ("attention_max_logit", "attention_entropy"):
        out[0] = Suggestion(
            fix="lr",
            text=f"lower the learning rate to about {suggested:g}, or normalise q and k before the dot "
            "product (QK-norm: a LayerNorm/RMSNorm per head), which keeps the attention logits bounded",
            where=None,
        )
    elif h.first_instrument in ("logit_rms", "log_partition"):
        out[0] = Suggestion(
            fix="lr",
            text=f"lower the learning rate to about {suggested:g}, or add a z-loss "
            "(1e-4 * logsumexp(logits)**2 averaged over positions) to keep the output logits anchored",
            where=None,
        )
    steps = max(10, 2 * (h.step or 0))
    out.append(
        Suggestion(fix="warmup", text=f"warm the learning rate up over at least {steps} steps", where=None)
    )
    out.append(
        Suggestion(
            fix="clip", text="clip the total gradient norm (torch.nn.utils.clip_grad_norm_)", where=None
        )
    )
    return tuple(out)
