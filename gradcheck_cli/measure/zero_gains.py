"""Gates: zero-initialised parameters that close a gradient path at init, measured as training opens them.

A zero (or tiny) parameter used as a multiplier (the last BatchNorm gain of a residual branch,
a ReZero/SkipInit alpha, a layer-scale gamma of 1e-6, a zero-initialised classifier head)
makes the output gradient of every layer behind it exactly 0 (or tiny) at init. That is a
design when the gate's own gradient is non-zero: the first optimizer step opens it. It is a
bug when that gradient is also 0 (a zero gain behind a zero weight): nothing ever moves.

How the flow behind an open gate is judged: the gradient upstream of a gate is linear in the
gate's value, so the gates are opened the way the first SGD step opens them, a small step
θ' = θ - s·g along their own gradient (s chosen so the largest gate's RMS is OPEN_RMS: the
forward pass barely changes), the same batch is measured again, and each layer's output
gradient is divided by s. That is the output gradient per unit of learning rate: after one
SGD step at lr η it is about η times `open_act_grad_norm` (tests/test_gates.py checks this
against real optimizer steps). Ratios between layers behind gates do not depend on s, so the
depth rules compare gated layers with each other on these numbers, never with open layers.

Only a parameter that can gate a signal costs those passes: `gating` reads the first batch's
autograd graph and keeps the candidates some op multiplies by (a matmul, a convolution, a norm's
gain, an elementwise product), looking through views, casts and broadcasts. One that is only ever
added, concatenated or looked up (a ViT's zero cls token or position embedding, an embedding
table) closes no path, so a model whose only tiny parameters are of that kind gets no extra pass.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from gradcheck_cli.measure.grads import dense
from gradcheck_cli.measure.probe import GradientProbe
from gradcheck_cli.measure.structure import multiplied
from gradcheck_cli.records.stats import LayerStats, ZeroGainStats

GATE_SCALE = 1e-2
"""A parameter is a gate candidate when its largest value, relative to its natural scale (1 for
a gain, 1/sqrt(fan-in) for a weight matrix), is at most this: 100x below any usual init."""
OPEN_RMS = 1e-3
"""The RMS the largest gate is opened to: small enough that the forward pass is unchanged."""
GATED_FACTOR = 10.0
"""A layer is behind a gate when opening the gates raises its output gradient this much."""


def candidates(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Trainable non-bias parameters at (or within GATE_SCALE of) zero. A bias is added, never
    multiplied, so a zero bias never closes a path."""
    named = [
        (name, p)
        for name, p in model.named_parameters()
        if p.requires_grad and p.numel() and "bias" not in name.rsplit(".", 1)[-1]
    ]
    if not named:
        return []
    with torch.no_grad():  # one host transfer for every parameter's largest value
        largest: list[float] = torch.stack([dense(p.detach()).abs().max().float() for _, p in named]).tolist()
    return [
        (name, p)
        for (name, p), top in zip(named, largest, strict=True)
        if top * math.sqrt(math.prod(p.shape[1:]) if p.dim() >= 2 else 1) <= GATE_SCALE
    ]


def gating(loss: torch.Tensor, model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The candidates that some op in `loss`'s graph may multiply by (`structure.multiplied`).
    One the graph does not use is left out: it gets no gradient, and no pass could open it."""
    found = candidates(model)
    kept = set(multiplied(loss, found)) if found else set()
    return [(name, p) for name, p in found if name in kept]


def measure(
    model: nn.Module,
    run_backward: Callable[[], None],
    layers: tuple[LayerStats, ...],
    seed: int,
    unscale: float = 1.0,
    gates: Sequence[tuple[str, nn.Parameter]] | None = None,
) -> tuple[tuple[LayerStats, ...], tuple[ZeroGainStats, ...]]:
    """`layers` with gated layers marked, and every gate found. `run_backward` runs one batch's
    forward, loss and backward; it runs twice (closed, then opened), only when candidates exist.
    `gates`: the candidates that can gate (`gating`, on the first measured batch's graph); None
    checks every candidate."""
    found = candidates(model) if gates is None else list(gates)
    if not found:
        return layers, ()
    with model_kept(model, [p for _, p in found]):
        closed, grads = _pass(model, run_backward, seed, found, unscale)
        opened, late, step = _open(model, run_backward, seed, found, grads, unscale)
    return _judge(layers, found, grads, closed, opened, late, step)


def _open(
    model: nn.Module,
    run_backward: Callable[[], None],
    seed: int,
    found: list[tuple[str, nn.Parameter]],
    grads: dict[str, torch.Tensor | None],
    unscale: float,
) -> tuple[dict[str, float], dict[str, torch.Tensor], float]:
    """The output gradient per unit of step once the gates are open, the gates that open only at
    the second step (their gradient is zero until a gate in front of them has moved: a chain of
    two gains), and the first step's size. A layer behind a chain is measured after the second
    step, divided by that step's size."""
    moving = _moving(grads, set())
    if not moving:
        return {}, {}, 0.0
    step = _step(found, moving)
    opened, after = _pass(model, run_backward, seed, found, unscale)
    late = _moving(after, set(moving))
    if late:
        second = _step(found, late)
        twice, _ = _pass(model, run_backward, seed, [], unscale)
        opened = {
            name: twice[name] * step / second if twice.get(name, 0.0) > GATED_FACTOR * value else value
            for name, value in opened.items()
        }
    return opened, late, step


def _moving(grads: dict[str, torch.Tensor | None], known: set[str]) -> dict[str, torch.Tensor]:
    return {n: g for n, g in grads.items() if n not in known and g is not None and bool(g.any())}


def _step(found: list[tuple[str, nn.Parameter]], moving: dict[str, torch.Tensor]) -> float:
    """Open the moving gates the way an SGD step does, the largest to an RMS of OPEN_RMS."""
    step = OPEN_RMS / max(_rms(g) for g in moving.values())
    with torch.no_grad():
        for name, param in found:
            if name in moving:
                param.sub_(step * moving[name])
    return step


@contextmanager
def model_kept(model: nn.Module, changed: Sequence[nn.Parameter] = ()) -> Iterator[None]:
    """The `changed` parameters and every buffer (BatchNorm running statistics) come back
    exactly as they were; only those are copied (a large model's weights are not)."""
    kept = [*changed, *model.buffers()]
    saved = [t.detach().clone() for t in kept]
    try:
        yield
    finally:
        with torch.no_grad():
            for tensor, value in zip(kept, saved, strict=True):
                tensor.copy_(value)
        model.zero_grad(set_to_none=True)


def _pass(
    model: nn.Module,
    run_backward: Callable[[], None],
    seed: int,
    gates: list[tuple[str, nn.Parameter]],
    unscale: float,
) -> tuple[dict[str, float], dict[str, torch.Tensor | None]]:
    """One batch under a probe, the same random stream each time (dropout masks match)."""
    devices = [p.device for p in model.parameters() if p.device.type == "cuda"][:1]
    model.zero_grad(set_to_none=True)
    with torch.random.fork_rng(devices=devices), GradientProbe(model) as probe:
        torch.manual_seed(seed)
        run_backward()
        probe.collect(unscale=unscale)
        norms = {layer.name: layer.act_grad_norm for layer in probe.layer_stats()}
    grads = {name: None if p.grad is None else p.grad.detach() / unscale for name, p in gates}
    return norms, grads


def _rms(value: torch.Tensor) -> float:
    return float(dense(value).float().square().mean().sqrt())


def _judge(
    layers: tuple[LayerStats, ...],
    found: list[tuple[str, nn.Parameter]],
    grads: dict[str, torch.Tensor | None],
    closed: dict[str, float],
    opened: dict[str, float],
    late: dict[str, torch.Tensor],
    step: float,
) -> tuple[tuple[LayerStats, ...], tuple[ZeroGainStats, ...]]:
    order = {layer.name: layer.index for layer in layers}
    gates = [
        _gate_record(name, param, grads[name], name in late)
        for name, param in found
        if grads.get(name) is not None
    ]
    behind: dict[str, list[str]] = {gate.name: [] for gate in gates}
    out = []
    for layer in layers:
        before, after = closed.get(layer.name, math.nan), opened.get(layer.name, math.nan)
        stuck = before == 0 and not after > 0 and layer.has_grad
        gated = after > GATED_FACTOR * before
        gate = _gate_of(layer, [g for g in gates if g.stuck == stuck], order) if gated or stuck else None
        if gate is None:
            out.append(layer)
            continue
        behind[gate.name].append(layer.name)
        flow = after / step if step and not stuck else 0.0
        out.append(
            dataclasses.replace(layer, gated_by=gate.name, open_act_grad_norm=flow, gate_width=gate.size)
        )
    records = tuple(dataclasses.replace(g, layers=tuple(behind[g.name])) for g in gates if behind[g.name])
    return tuple(out), records


def _gate_record(name: str, param: nn.Parameter, grad: torch.Tensor | None, second: bool) -> ZeroGainStats:
    with torch.no_grad():
        value = float(dense(param.detach()).abs().max())
        grad_norm = float(dense(grad).float().norm()) if grad is not None else 0.0
    stuck = grad_norm == 0.0 and not second
    return ZeroGainStats(
        name=name,
        module=name.rsplit(".", 1)[0] if "." in name else "",
        value=value,
        grad_norm=grad_norm,
        stuck=stuck,
        opens_at_step=0 if stuck else 2 if second else 1,
        size=param.numel(),
    )


def _gate_of(layer: LayerStats, gates: list[ZeroGainStats], order: dict[str, int]) -> ZeroGainStats | None:
    """The gate closing `layer`'s path: one in the same block if any (the longest shared name
    prefix; a squeeze-excite fed by a zero branch is gated by the gain before it), else one that
    runs after it, the nearest in forward order."""
    if not gates:
        return None

    def rank(gate: ZeroGainStats) -> tuple[int, int, int]:
        index = order.get(gate.module, math.inf)
        downstream = index >= layer.index if gate.module else False
        distance = int(index - layer.index) if math.isfinite(index) else 1 << 30
        return (_shared(layer.name, gate.module), int(downstream), -abs(distance))

    return max(gates, key=rank)


def _shared(a: str, b: str) -> int:
    count = 0
    for x, y in zip(a.split("."), b.split("."), strict=False):
        if x != y:
            break
        count += 1
    return count
