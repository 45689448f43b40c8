"""Evidence or nothing: a run that measured nothing gets no verdict (exit 2), never `healthy`."""

from __future__ import annotations

from gradcheck_cli.records.errors import NothingMeasuredError
from gradcheck_cli.records.stats import ProbeResult
from gradcheck_cli.records.text import count


def require_evidence(probe: ProbeResult) -> None:
    """Raise NothingMeasuredError when no trainable layer's output-gradient hook fired.

    A layer whose parameters got no gradient is evidence (no-gradient says so); a layer whose
    hooks never fired although its parameters got a gradient is `not-measured`. When that is
    every trainable layer, every status would be `not-measured` and the summary `healthy` on
    nothing: the run could not look at the model, and says why instead.
    """
    judged = [layer for layer in probe.layers if layer.trainable and layer.shared_with is None]
    if not judged or any(layer.measured and layer.hooked for layer in judged):
        return
    if not all(layer.has_grad for layer in judged):
        return  # parameters without a gradient: the no-gradient finding is the measured fact
    names = ", ".join(layer.name for layer in judged[:3]) + (", ..." if len(judged) > 3 else "")
    raise NothingMeasuredError(
        f"nothing was measured: no layer's gradient was measured, the hooks of none of the "
        f"{count(len(judged), 'trainable layer')} fired ({names}), so every layer would be `not-measured`",
        "gradcheck measures through module hooks: call each layer as a module (self.fc(x)), not through "
        "its parameters (F.linear(x, self.fc.weight)), and pass the eager model, not a torch.jit.script "
        "or torch.compile wrapper",
    )
