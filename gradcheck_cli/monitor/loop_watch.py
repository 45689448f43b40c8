"""LoopWatch: what the user's training loop does, seen from inside it.

Given the optimizer (and optionally the GradScaler and the scheduler), the monitor records per
measured step: each layer's optimizer group (or none), each group's learning rate, whether
`.grad` was zeroed before the backward, whether the weights changed since the previous measured
step, the scaler's scale and the steps it skipped.

How, and what it costs:
- optimizer steps are counted by a step post-hook (an integer per step, nothing on the device);
  a monitor.step() call with no optimizer step since the previous one is a skipped step when a
  GradScaler is in use (GradScaler.step does not call optimizer.step on an overflow);
- `.grad` left over: on measured steps only, a hook on each parameter sees this backward's own
  gradient before autograd adds it into `.grad`, and the `.grad` it is added to;
- accumulation: on measured steps only, the same hooks count the backward passes that reach
  each parameter before the step, and a hook on the model's output reads what the loss was
  divided by (measure/loss_divisor.py: exact for a softmax cross-entropy, unknown otherwise);
- clipping after the update: on measured steps only, a step pre-hook takes the gradient norm
  the optimizer applies, compared with the norm the monitor reads after the step;
- weights changed: on measured steps only, a checksum of each layer's parameters' bits (an
  integer sum of the raw bits: any update that changes a single weight changes it, an update
  too small for the dtype to represent does not, which is exactly what a stall is).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from gradcheck_cli.measure.grads import to_host
from gradcheck_cli.measure.loss_divisor import divisor_sums, loss_divisor
from gradcheck_cli.records.loop import LayerLoop, LoopPoint

_BITS = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def layer_params(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Each parameter-owning module's own parameters, named as the probe names its layers."""
    owners: dict[int, str] = {}
    out: dict[str, list[nn.Parameter]] = {}
    for name, module in model.named_modules():
        label = name or type(module).__name__
        own = [p for p in module.parameters(recurse=False) if owners.setdefault(id(p), label) == label]
        if own:
            out[label] = own
    return out


_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def modal_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules whose training flag changes what they compute: BatchNorm with running statistics
    (batch statistics vs the frozen running ones) and dropout with p > 0."""
    norms: list[tuple[str, nn.Module]] = [
        (name, m) for name, m in model.named_modules() if isinstance(m, _NORMS) and m.track_running_stats
    ]
    drops: list[tuple[str, nn.Module]] = [
        (name, m) for name, m in model.named_modules() if isinstance(m, _DROPOUTS) and m.p > 0
    ]
    return norms + drops


def checksum(params: Sequence[torch.Tensor]) -> torch.Tensor:
    """A sum of the parameters' raw bits (wrapping int64), kept to 52 bits: exact in float64."""
    sums = []
    for p in params:
        data = torch.view_as_real(p.detach()) if p.is_complex() else p.detach()
        sums.append(data.view(_BITS[data.element_size()]).sum(dtype=torch.int64))
    return torch.stack(sums).sum().bitwise_and((1 << 52) - 1)


class LoopWatch:
    """Records the loop around a GradientMonitor; `point()` at each measured step."""

    def __init__(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: Any = None, scheduler: Any = None
    ) -> None:
        self.model, self.optimizer, self.scaler, self.scheduler = model, optimizer, scaler, scheduler
        self.optimizer_steps = 0
        self.skipped = 0
        self.settling = 0
        self._steps_at_call = 0
        self._stepped_since_call = False
        """monitor.step() came after this iteration's optimizer step (a loop that calls it after
        scaler.step()/update(): the scaler has unscaled the gradients in place already)."""
        self._steps_at_arm: int | None = None
        self._handles: list[Any] = [
            optimizer.register_step_post_hook(self._on_optimizer_step),
            optimizer.register_step_pre_hook(self._before_optimizer_step),
        ]
        self._grad_hooks: list[Any] = []
        self._seen: dict[int, tuple[str, torch.Tensor, torch.Tensor]] = {}
        self._backwards: dict[int, int] = {}
        self._divisors: list[torch.Tensor] = []
        self._at_step: torch.Tensor | None = None
        self._checksums: dict[str, int] = {}
        self._layers = layer_params(model)
        self._modal = modal_modules(model)

    def _on_optimizer_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self.optimizer_steps += 1

    def _before_optimizer_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        # measured steps only, once this step's backward ran: the norm the update applies
        if self._grad_hooks and self._seen and self._at_step is None:
            self._at_step = _total_norm(self.optimizer)

    def _on_output(self, module: nn.Module, args: Any, out: Any) -> None:
        out = out[0] if isinstance(out, (tuple, list)) and out else out
        if not isinstance(out, torch.Tensor) or not out.requires_grad or not out.is_floating_point():
            return
        if out.dim() < 1 or out.shape[-1] < 2:
            return
        seen, scale = out.detach(), getattr(self.scaler, "_scale", None) if self._scaler_on() else None
        self._grad_hooks.append(
            out.register_hook(lambda g: self._divisors.append(divisor_sums(seen, g, scale)))
        )

    # -- every monitor.step() call: integers only ------------------------------------------------
    def call(self, calls: int) -> None:
        """Before the monitor counts step `calls`: was the previous iteration's step skipped?"""
        self._stepped_since_call = self.optimizer_steps > self._steps_at_call
        if calls > 0 and self.optimizer_steps == self._steps_at_call and self._scaler_on():
            self.skipped += 1
            self.settling += self.optimizer_steps == 0  # no step taken yet: the scale settling
        self._steps_at_call = self.optimizer_steps

    # -- measured steps ---------------------------------------------------------------------------
    def arm(self, first: bool) -> None:
        """Hooks on every trainable parameter until the next measured step is collected."""
        self.disarm()
        self._steps_at_arm = None if first else self.optimizer_steps
        for name, params in self._layers.items():
            for p in params:
                if p.requires_grad:
                    self._grad_hooks.append(p.register_hook(self._grad_hook(name, p)))
        self._grad_hooks.append(self.model.register_forward_hook(self._on_output))

    def disarm(self) -> None:
        for handle in self._grad_hooks:
            handle.remove()
        self._grad_hooks.clear()
        self._seen.clear()
        self._backwards.clear()
        self._divisors.clear()
        self._at_step = None

    def _grad_hook(self, name: str, param: nn.Parameter) -> Callable[[torch.Tensor], None]:
        seen, backwards = self._seen, self._backwards

        def hook(grad: torch.Tensor) -> None:
            backwards[id(param)] = backwards.get(id(param), 0) + 1
            if id(param) in seen or grad is None or grad.is_sparse:
                return  # the first backward after arm() is the one that follows the zero_grad
            old = param.grad
            own = _norm(grad)
            before = torch.zeros_like(own) if old is None or old.is_sparse else _norm(old)
            seen[id(param)] = (name, before, own)

        return hook

    def unscale(self) -> float:
        """The loss scale of the gradients the monitor is about to read (1 once unscaled)."""
        if not self._scaler_on() or self._stepped_since_call:
            return 1.0
        states = getattr(self.scaler, "_per_optimizer_states", {})
        stage = states.get(id(self.optimizer), {}).get("stage")
        if stage is not None and getattr(stage, "name", "") in ("UNSCALED", "STEPPED"):
            return 1.0
        return float(self.scaler.get_scale())

    def point(self, calls: int, nonfinite: bool, scale: float) -> LoopPoint:
        """This measured step's LoopPoint (one host transfer for the carries and the checksums)."""
        names = list(self._layers)
        seen = list(self._seen.values())
        sums = [checksum(self._layers[n]) for n in names]
        host = to_host(sums, [t for _, a, b in seen for t in (a, b)]) if names else []
        at_step, after, divisor = self._step_numbers()
        changed = {}
        for name, value in zip(names, host[: len(names)], strict=True):
            before = self._checksums.get(name)
            changed[name] = None if before is None else int(value) != before
            self._checksums[name] = int(value)
        carries = _carries(seen, host[len(names) :])
        stepped = None if self._steps_at_arm is None else self.optimizer_steps > self._steps_at_arm
        if stepped is False and self._scaler_on():
            stepped = True  # the scaler skipped the optimizer step in between: zero_grad still due
        groups = {id(p): i for i, g in enumerate(self.optimizer.param_groups) for p in g["params"]}
        layers = {
            name: LayerLoop(
                group=_group_of(self._layers[name], groups),
                grad_zeroed=None if carries.get(name) is None or stepped is None else carries[name] == 0,
                grad_carry=math.nan if carries.get(name) is None else float(carries[name]),
                weight_changed=changed[name],
            )
            for name in names
            if any(p.requires_grad for p in self._layers[name])
        }
        on = self._scaler_on()
        return LoopPoint(
            optimizer=type(self.optimizer).__name__,
            lrs=tuple(float(g["lr"]) for g in self.optimizer.param_groups),
            scheduler=type(self.scheduler).__name__ if self.scheduler is not None else None,
            calls=calls,
            optimizer_steps=self.optimizer_steps,
            stepped=stepped,
            loss_scale=scale if on else None,
            scaler_skipped=on and nonfinite,
            skipped_steps=self.skipped,
            settling_skips=self.settling,
            layers=layers,
            eval_modules=tuple(name for name, module in self._modal if not module.training),
            backwards=max(self._backwards.values(), default=0),
            loss_divisor=divisor,
            grad_norm_at_step=at_step,
            grad_norm_after_step=after,
        )

    def _step_numbers(self) -> tuple[float, float, float]:
        """(norm at optimizer.step, norm now, loss divisor) on the host; NaN where unknown."""
        after = _total_norm(self.optimizer)
        scalars = [after] + ([self._at_step] if self._at_step is not None else [])
        host = to_host(scalars, [v for d in self._divisors for v in d.unbind()])
        at_step = host[1] if self._at_step is not None else math.nan
        rest = host[len(scalars) :]
        divisor = loss_divisor([rest[i : i + 3] for i in range(0, len(rest), 3)])
        return at_step, host[0], divisor

    def _scaler_on(self) -> bool:
        return self.scaler is not None and bool(self.scaler.is_enabled())

    def close(self) -> None:
        self.disarm()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def _norm(tensor: torch.Tensor) -> torch.Tensor:
    """An L2 norm that cannot overflow float32 (float64, or float32 on MPS which has no float64)."""
    wide = torch.float32 if tensor.device.type == "mps" else torch.float64
    return torch.linalg.vector_norm(tensor.detach(), dtype=wide)


def _total_norm(optimizer: torch.optim.Optimizer) -> torch.Tensor:
    """The L2 norm of every gradient the optimizer holds (0 when none), widened."""
    grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    grads = [g for g in grads if not g.is_sparse]
    if not grads:
        first = next((p for g in optimizer.param_groups for p in g["params"]), None)
        device = first.device if first is not None else torch.device("cpu")
        return torch.zeros((), dtype=torch.float32 if device.type == "mps" else torch.float64, device=device)
    return torch.linalg.vector_norm(torch.stack([_norm(g).to(grads[0].device) for g in grads]))


def _carries(seen: list[tuple[str, torch.Tensor, torch.Tensor]], host: list[float]) -> dict[str, float]:
    """Per layer, ||.grad before this backward|| / ||this backward's own gradient||."""
    old_sq: dict[str, float] = {}
    own_sq: dict[str, float] = {}
    for (name, _, _), old, own in zip(seen, host[0::2], host[1::2], strict=True):
        old_sq[name] = old_sq.get(name, 0.0) + old * old
        own_sq[name] = own_sq.get(name, 0.0) + own * own
    out = {}
    for name, own in own_sq.items():
        old = old_sq[name]
        out[name] = 0.0 if old == 0 else (math.sqrt(old) / math.sqrt(own) if own > 0 else math.inf)
    return out


def _group_of(params: Sequence[nn.Parameter], groups: dict[int, int]) -> int | None:
    found = [groups[id(p)] for p in params if p.requires_grad and id(p) in groups]
    return found[0] if found else None
