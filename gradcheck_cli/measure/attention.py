"""Attention probabilities of nn.MultiheadAttention and F.scaled_dot_product_attention, on the first batch.

Neither returns its probabilities on the fast path, so they are recomputed from the inputs
each call receives: the module's own q/k projections for nn.MultiheadAttention (captured by a
forward pre-hook), q and k as passed for scaled_dot_product_attention (seen through a
TorchFunctionMode), with the same masks and scale. Per site: the mean entropy of each
query's distribution over the keys it may see, divided by its maximum (1 uniform, 0 one-hot),
the fraction of queries putting more than 99% on one key, and the largest |logit|.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from gradcheck_cli.records.stats import AttentionStats

ONE_KEY = 0.99
"""A query 'collapsed' onto one key when that key gets more than this probability."""


def measure_attention(model: nn.Module, run_forward: Callable[[], Any]) -> tuple[AttentionStats, ...]:
    mha = {name: m for name, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)}
    sites: dict[str, list[torch.Tensor]] = {}
    handles = [
        m.register_forward_pre_hook(_mha_hook(name, sites), with_kwargs=True) for name, m in mha.items()
    ]
    tracker = _ModuleTracker(model)
    try:
        with torch.no_grad(), tracker, _SdpaWatch(sites, tracker):
            run_forward()
    except Exception:  # a model the recomputation does not fit: no attention statistics, not a failure
        return ()
    finally:
        for handle in handles:
            handle.remove()
    return tuple(_stats(name, rows) for name, rows in sites.items() if rows)


def _mha_hook(name: str, sites: dict[str, list[torch.Tensor]]) -> Callable[..., None]:
    def hook(module: nn.MultiheadAttention, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if name in sites:
            return
        query = args[0] if args else kwargs["query"]
        key = args[1] if len(args) > 1 else kwargs.get("key", query)
        q, k = _project(module, query, key)
        mask = _mha_mask(
            kwargs.get("attn_mask"), kwargs.get("key_padding_mask"), kwargs.get("is_causal", False), q, k
        )
        sites[name] = [_probabilities(q, k, mask, None)]

    return hook


def _project(
    m: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """q and k per head as (batch, heads, length, head_dim), with the module's own weights."""
    if not m.batch_first and query.dim() == 3:
        query, key = query.transpose(0, 1), key.transpose(0, 1)
    if query.dim() == 2:
        query, key = query.unsqueeze(0), key.unsqueeze(0)
    e = m.embed_dim
    if m.in_proj_weight is not None:
        w_q, w_k = m.in_proj_weight[:e], m.in_proj_weight[e : 2 * e]
    else:
        w_q, w_k = m.q_proj_weight, m.k_proj_weight
    b = m.in_proj_bias
    q = F.linear(query.float(), w_q.float(), None if b is None else b[:e].float())
    k = F.linear(key.float(), w_k.float(), None if b is None else b[e : 2 * e].float())
    heads, dim = m.num_heads, e // m.num_heads
    return (q.unflatten(-1, (heads, dim)).transpose(1, 2), k.unflatten(-1, (heads, dim)).transpose(1, 2))


def _mha_mask(
    attn_mask: Any, padding: Any, is_causal: bool, q: torch.Tensor, k: torch.Tensor
) -> torch.Tensor | None:
    """An additive mask (0 or -inf) of shape broadcastable to (batch, heads, L, S)."""
    length, source = q.shape[-2], k.shape[-2]
    mask = torch.zeros(length, source, device=q.device)
    if isinstance(attn_mask, torch.Tensor):
        extra = (
            attn_mask.float().masked_fill(attn_mask, -math.inf)
            if attn_mask.dtype == torch.bool
            else attn_mask.float()
        )
        mask = mask + (extra if extra.dim() == 2 else extra.reshape(q.shape[0], -1, length, source))
    elif is_causal:
        mask = mask.masked_fill(
            torch.ones(length, source, dtype=torch.bool, device=q.device).triu(1), -math.inf
        )
    if isinstance(padding, torch.Tensor):
        pad = padding.bool() if padding.dtype == torch.bool else padding < -1e30
        mask = mask + torch.zeros_like(pad, dtype=torch.float).masked_fill(pad, -math.inf)[:, None, None, :]
    return mask


def _probabilities(
    q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None, scale: float | None
) -> torch.Tensor:
    """[entropy sum, rows, collapsed rows, max |logit|] over the queries that see at least two keys."""
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    logits = (q.float() @ k.float().transpose(-2, -1)) * scale
    if mask is not None:
        logits = logits + mask
    allowed = torch.isfinite(logits)
    probs = logits.softmax(dim=-1).nan_to_num(0.0)
    seen = allowed.sum(dim=-1)
    rows = seen > 1  # a query that may see one key has nothing to choose
    plogp = torch.where(probs > 0, probs * probs.clamp_min(1e-30).log(), torch.zeros_like(probs))
    entropy = -plogp.sum(dim=-1) / seen.clamp_min(2).float().log()
    collapsed = probs.amax(dim=-1) > ONE_KEY
    largest = logits.masked_fill(~allowed, 0.0).abs().amax() if allowed.any() else logits.new_zeros(())
    return torch.stack(
        [entropy[rows].sum(), rows.sum().float(), (collapsed & rows).sum().float(), largest.float()]
    )


def _stats(name: str, measured: list[torch.Tensor]) -> AttentionStats:
    entropy, rows, collapsed, largest = torch.stack(measured).T.tolist()
    count = sum(rows)
    return AttentionStats(
        name=name,
        entropy=sum(entropy) / count if count else math.nan,
        collapsed_fraction=sum(collapsed) / count if count else math.nan,
        max_logit=max(largest),
        queries=int(count),
    )


class _ModuleTracker:
    """The innermost module of `model` running now (for naming functional attention calls)."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.stack = model, [""]
        self.handles: list[Any] = []

    def __enter__(self) -> _ModuleTracker:
        for name, module in self.model.named_modules():
            self.handles.append(module.register_forward_pre_hook(self._enter(name)))
            self.handles.append(module.register_forward_hook(self._leave))
        return self

    def _enter(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any) -> None:
            self.stack.append(name)

        return hook

    def _leave(self, module: nn.Module, args: Any, output: Any) -> None:  # None: the output stays as it is
        self.stack.pop()

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()

    @property
    def current(self) -> str:
        return self.stack[-1] or "model"


class _SdpaWatch(TorchFunctionMode):
    """Sees F.scaled_dot_product_attention calls; records the first call made in each module."""

    def __init__(self, sites: dict[str, list[torch.Tensor]], tracker: _ModuleTracker) -> None:
        super().__init__()
        self.sites, self.tracker = sites, tracker

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            name = f"{self.tracker.current}:sdpa"
            if name not in self.sites:
                self.sites[name] = [self._measure(*args, **kwargs)]
        return func(*args, **kwargs)

    @staticmethod
    def _measure(
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        dropout_p: float = 0.0,
        is_causal: bool = False,
        scale: float | None = None,
        **_: Any,
    ) -> torch.Tensor:
        mask = sdpa_mask(query, key, attn_mask, is_causal)
        return _probabilities(query, key, mask, scale)


def sdpa_mask(
    query: torch.Tensor, key: torch.Tensor, attn_mask: torch.Tensor | None, is_causal: bool
) -> torch.Tensor:
    """The additive mask F.scaled_dot_product_attention applies: -inf where a bool mask is False
    (or above the diagonal when causal), a float mask as given."""
    length, source = query.shape[-2], key.shape[-2]
    mask = torch.zeros(length, source, device=query.device)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            return mask.masked_fill(~attn_mask, -math.inf)
        return mask + attn_mask.detach().float()
    if is_causal:
        causal = torch.ones(length, source, dtype=torch.bool, device=query.device).triu(1)
        mask = mask.masked_fill(causal, -math.inf)
    return mask
