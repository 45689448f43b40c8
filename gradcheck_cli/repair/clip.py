"""clip: not a change of gradient flow; the clip_grad_norm_ max_norm the measured norms imply.

The bar is a tenth of the model's measured weight norm: clipped there, one SGD step at
learning rate 1 moves the weights by at most 10% of their size (0.01% to 1% at the usual
1e-3 to 1e-1). Gradient norms are no basis for it: in an exploding model every layer's
gradient is inflated, the one next to the loss too, since the forward signal grows as well.
Clipping does not cure vanishing, so this is advice, not a transform: nothing is re-measured.
"""

from __future__ import annotations

import math

from gradcheck_cli.records.stats import ProbeResult

WEIGHT_FRACTION = 0.1


def clip_value(probe: ProbeResult) -> tuple[float, float] | None:
    """(max_norm, measured global gradient norm), or None when nothing finite was measured."""
    measured = [
        layer
        for layer in probe.layers
        if layer.trainable
        and layer.shared_with is None
        and math.isfinite(layer.weight_norm)
        and math.isfinite(layer.grad_norm)
    ]
    weight_norm = math.sqrt(sum(layer.weight_norm**2 for layer in measured))
    if not weight_norm > 0:
        return None
    global_norm = math.sqrt(sum(layer.grad_norm**2 for layer in measured))
    return _two_digits(WEIGHT_FRACTION * weight_norm), global_norm


def clip_note(probe: ProbeResult) -> tuple[str, float | None]:
    value = clip_value(probe)
    if value is None:
        return "no finite weight norm was measured to derive a clip value from", None
    max_norm, global_norm = value
    acts = (
        "it would clip the steps measured here"
        if global_norm > max_norm
        else "it would not act on these steps"
    )
    note = (
        f"advice, not a change of flow: call torch.nn.utils.clip_grad_norm_(model.parameters(), "
        f"max_norm={max_norm:g}) before each optimizer step, a tenth of the weight norm; "
        f"measured global gradient norm {global_norm:.3g}, so {acts}"
    )
    return note, max_norm


def _two_digits(value: float) -> float:
    return float(f"{value:.2g}")
