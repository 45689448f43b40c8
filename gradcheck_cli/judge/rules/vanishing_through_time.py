"""vanishing-through-time: a recurrent model forgets: early steps get no gradient."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from gradcheck_cli.judge.rules.base import RECURRENT, rule
from gradcheck_cli.judge.rules.profile import sig
from gradcheck_cli.judge.rules.profile import where as where_of
from gradcheck_cli.judge.rules.training import RETRAIN, trained_state
from gradcheck_cli.records.findings import Finding, LayerStatus, Severity, Suggestion
from gradcheck_cli.records.stats import ProbeResult, ThroughTime


@dataclass(frozen=True, slots=True)
class ThroughTimeLimits:
    horizon_fraction: float = 0.5
    """Fire when the horizon is shorter than this fraction of the sequence."""
    min_steps: int = 8
    """Sequences shorter than this are not judged."""


GATED = ("GRU", "LSTM", "GRUCell", "LSTMCell")


@rule(
    id="vanishing-through-time",
    severity=Severity.ERROR,
    fixes=("gru", "lstm", "clip", "init"),
    limits=ThroughTimeLimits,
    applies_when=RECURRENT,
)
def vanishing_through_time(probe: ProbeResult, limits: ThroughTimeLimits) -> Iterator[Finding]:
    """In a recurrent model, the gradient reaching early time steps is orders of magnitude below the last.

    ## What it detects
    A separate backward pass from the recurrent module's output at the last time step
    only (a per-step loss would hide the effect, since every step gets its own
    gradient), measuring the gradient norm that reaches each step's input. The horizon
    is how many steps back that gradient stays above `horizon_floor` (1e-3) of the last
    step's. Exact zeros at early steps are float32 underflow: vanishing, not no-gradient.
    Cells stepped by a Python loop (nn.RNNCell/GRUCell/LSTMCell) are measured the same way,
    one step per call, from the last call's hidden state.

    ## Why it matters
    Beyond the horizon the model cannot learn dependencies. Measured by gradcheck over
    200 steps at PyTorch's default init: a tanh `nn.RNN` decays x0.47-0.60 per step
    (horizon 8-12 steps, by hidden size 32-256); GRU and LSTM decay too (x0.62-0.65,
    horizon 12-14). An LSTM with forget-gate bias 1 reaches 32-43 steps; a gate bias of
    3 gives a GRU 158-182 steps and an LSTM the whole sequence. Attention models are not
    measured here: the causal mask gives position 0 the most gradient.

    ## Evidence
    `module`, `steps`, `horizon`, `horizon_floor`, `per_step_factor` (fitted decay per
    step), `first_step` (gradient at step 0 relative to the last), `threshold`
    (the horizon below which it fires), `curve` (per-step ratios, oldest first).

    ## Thresholds
    `horizon_fraction` = 0.5: fires when the gradient dies within less than half the
    sequence. A vanilla RNN is an error; a gated cell is a warning (its fix is the gate
    bias). `min_steps` = 8.

    ## Fixes
    gru: replace nn.RNN with nn.GRU of the same sizes, and set the update-gate bias.
    lstm: replace nn.RNN with nn.LSTM of the same sizes, forget-gate bias 1 to 3.
    clip: clipping does not cure vanishing but keeps the gated replacement stable.
    init: for GRU/LSTM, a gate bias of 1-3 stretches the horizon to the whole sequence.

    ## Example
    `gradcheck analyze builtin:vanilla-rnn` fires as an error; `builtin:gru` and
    `builtin:lstm` (gate bias 3) are its healthy twins; `builtin:lstm --arch-opt
    gate_bias=0` is the gated warning.
    """
    for tt in probe.through_time:
        if tt.steps < limits.min_steps:
            continue
        bar = limits.horizon_fraction * tt.steps
        if tt.horizon >= bar or (tt.curve and tt.curve[0] > 1):
            continue
        yield _finding(tt, bar, probe)


def _finding(tt: ThroughTime, bar: float, probe: ProbeResult) -> Finding:
    gated = tt.type in GATED
    where = where_of(tt.source, probe)
    return Finding(
        id="vanishing-through-time",
        severity=Severity.WARNING if gated else Severity.ERROR,
        layers=(tt.module,),
        status=LayerStatus.VANISHING,
        message=f"{tt.module} ({tt.type}) forgets: the gradient from the last step {_falls(tt)}.",
        evidence={
            "module": tt.module,
            "steps": tt.steps,
            "horizon": tt.horizon,
            "horizon_floor": tt.horizon_floor,
            "per_step_factor": sig(tt.per_step_factor),
            "first_step": sig(tt.curve[0]) if tt.curve else None,
            "threshold": bar,
            "curve": [sig(v) for v in tt.curve],
        },
        suggestions=_retrain(_gated_fix(tt, where) if gated else _replace_fixes(tt, where), probe),
    )


def _falls(tt: ThroughTime) -> str:
    size = f"{tt.horizon_floor:g} of its size"
    per_step = f"x{tt.per_step_factor:.2f} per step"
    if tt.horizon == 0:
        return f"is below {size} already one step back, of {tt.steps} ({per_step})"
    return f"falls below {size} after {tt.horizon} of {tt.steps} steps ({per_step})"


def _retrain(suggestions: tuple[Suggestion, ...], probe: ProbeResult) -> tuple[Suggestion, ...]:
    """On a trained model a gate bias or a cell swap is a build-time change: say it needs retraining."""
    if not trained_state(probe):
        return suggestions
    return tuple(replace(s, text=f"{s.text} ({RETRAIN})") if s.fix != "clip" else s for s in suggestions)


def signature(tt: ThroughTime) -> str:
    args = f"{tt.input_size}, {tt.hidden_size}"
    if tt.num_layers != 1:
        args += f", num_layers={tt.num_layers}"
    if tt.batch_first:
        args += ", batch_first=True"
    return args


def _replace_fixes(tt: ThroughTime, where: str | None) -> tuple[Suggestion, ...]:
    sig_text = signature(tt)
    cell = "Cell" if tt.type.endswith("Cell") else ""
    return (
        Suggestion(
            fix="gru",
            text=(
                f"replace nn.{tt.type}({sig_text}) with nn.GRU{cell}({sig_text}) and set the update-gate bias: "
                f"{_bias_text(tt)}"
            ),
            where=where,
        ),
        Suggestion(
            fix="lstm",
            text=(
                f"replace nn.{tt.type}({sig_text}) with nn.LSTM{cell}({sig_text}) and set the "
                f"forget-gate bias: {_bias_text(tt)} (the hidden state becomes (h, c))"
            ),
            where=where,
        ),
        Suggestion(
            fix="clip", text="clip the gradient norm while training the gated replacement", where=None
        ),
    )


def _bias_text(tt: ThroughTime, value: float = 3.0) -> str:
    cell = tt.type.endswith("Cell")  # a cell's bias has no layer suffix
    names = ["bias_ih"] if cell else [f"bias_ih_l{k}" for k in range(tt.num_layers)]
    chunk = f"[{tt.hidden_size}:{2 * tt.hidden_size}]"
    return " and ".join(f"self.{tt.module}.{name}{chunk}.data.fill_({value:g})" for name in names)


def _gated_fix(tt: ThroughTime, where: str | None) -> tuple[Suggestion, ...]:
    gate = "update (z)" if tt.type.startswith("GRU") else "forget"
    if tt.gate_bias is not None and tt.gate_bias >= 2.5:
        # Already set: a gate bias b keeps about sigmoid(b) of the state per step.
        text = (
            f"the {gate}-gate bias of {tt.module} is already {tt.gate_bias:.1f}; raise it to 5 "
            f"(keeps ~0.993 of the state per step, against ~0.95 at 3): {_bias_text(tt, 5.0)}, "
            "or train on shorter sequences (truncated backpropagation through time)"
        )
    else:
        text = f"set the {gate}-gate bias of {tt.module} to 3: {_bias_text(tt)}"
    return (Suggestion(fix="init", text=text, where=where),)
