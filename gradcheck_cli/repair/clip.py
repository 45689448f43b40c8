"""clip: not a change of gradient flow; the clip_grad_norm_ max_norm the measured norms imply.

With L parameter-owning layers whose gradient norms were all at the median m, the global
norm would be m * sqrt(L). Clipping there leaves a model whose layers carry typical
gradients untouched and cuts steps where a few layers blow up, which is what clipping is
for. It does not cure vanishing, so it is advice, not a transform: nothing is re-measured.
"""

from __future__ import annotations

import math

from gradcheck_cli.stats import ProbeResult


def clip_value(probe: ProbeResult) -> tuple[float, float] | None:
    """(max_norm, measured global norm), or None when no finite gradient was measured."""
    norms = [
        layer.grad_norm
        for layer in probe.layers
        if layer.trainable and layer.has_grad and layer.shared_with is None and math.isfinite(layer.grad_norm)
    ]
    norms = [n for n in norms if n > 0]
    if not norms:
        return None
    ordered = sorted(norms)
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    global_norm = math.sqrt(sum(n * n for n in norms))
    return _two_digits(median * math.sqrt(len(norms))), global_norm


def clip_note(probe: ProbeResult) -> tuple[str, float | None]:
    value = clip_value(probe)
    if value is None:
        return "no finite gradient norm was measured to derive a clip value from", None
    max_norm, global_norm = value
    note = (
        f"advice, not a change of flow: call torch.nn.utils.clip_grad_norm_(model.parameters(), "
        f"max_norm={max_norm:g}) before each optimizer step (measured global norm {global_norm:.3g})"
    )
    return note, max_norm


def _two_digits(value: float) -> float:
    return float(f"{value:.2g}")
