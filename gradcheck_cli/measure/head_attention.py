"""Per attention head, at every forward: the largest |q.k| logit and the mean attention entropy.

--lr-headroom records both at every training step. The logits are recomputed as
measure/attention.py recomputes them (the module's own q/k projections for
nn.MultiheadAttention, q and k as passed to F.scaled_dot_product_attention, with the same
masks and scale), but kept per head: large runs clip on the per-head maximum, and one head's
growth is what breaks a run first.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from gradcheck_cli.measure.attention import _mha_mask, _ModuleTracker, _project, sdpa_mask


def head_stats(
    q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None, scale: float | None
) -> torch.Tensor:
    """(heads, 2): per head, the largest |logit| and the mean entropy (over the queries that may see
    two keys or more) divided by its maximum, log(keys seen)."""
    with torch.no_grad():
        q, k = q.detach().float(), k.detach().float()
        if q.dim() == 3:  # (batch, length, dim): one head
            q, k = q.unsqueeze(1), k.unsqueeze(1)
        if k.shape[-3] != q.shape[-3] and q.shape[-3] % k.shape[-3] == 0:  # grouped-query attention
            k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
        scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
        logits = (q @ k.transpose(-2, -1)) * scale
        if mask is not None:
            logits = logits + mask
        allowed = torch.isfinite(logits)
        largest = logits.masked_fill(~allowed, 0.0).abs().flatten(-2).amax(-1)  # (..., heads)
        probs = logits.softmax(dim=-1).nan_to_num(0.0)
        seen = allowed.sum(dim=-1)
        plogp = torch.where(probs > 0, probs * probs.clamp_min(1e-30).log(), torch.zeros_like(probs))
        entropy = -plogp.sum(dim=-1) / seen.clamp_min(2).float().log()
        rows = (seen > 1).float()
        mean_entropy = (entropy * rows).flatten(-1).sum(-1) / rows.flatten(-1).sum(-1).clamp_min(1)
        heads = q.shape[-3]
        return torch.stack(
            [largest.reshape(-1, heads).amax(0), mean_entropy.reshape(-1, heads).mean(0)], dim=1
        )


class HeadWatch:
    """Hooks on every attention site of `model`; `with watch.forward():` around a forward records that
    forward's per-head statistics, which `take()` returns (site name -> (heads, 2) tensor)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.mha = {name: m for name, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)}
        self.sites: dict[str, torch.Tensor] = {}
        self.active = False
        self.handles: list[Any] = []
        self.tracker = _ModuleTracker(model)

    def __enter__(self) -> HeadWatch:
        for name, module in self.mha.items():
            self.handles.append(module.register_forward_pre_hook(self._mha_hook(name), with_kwargs=True))
        self.tracker.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.tracker.__exit__(*exc)
        for handle in self.handles:
            handle.remove()

    @contextmanager
    def forward(self) -> Iterator[None]:
        self.sites = {}
        self.active = True
        try:
            with _SdpaHeads(self):
                yield
        finally:
            self.active = False

    def take(self) -> dict[str, torch.Tensor]:
        sites, self.sites = self.sites, {}
        return sites

    def record(self, name: str, stats: Callable[[], torch.Tensor]) -> None:
        """The first call of each site in a forward counts (a site called twice is one site)."""
        if self.active and name not in self.sites:
            try:
                self.sites[name] = stats()
            except (RuntimeError, IndexError, ValueError):  # a layout the recomputation does not fit
                self.sites[name] = torch.full((1, 2), math.nan)

    def _mha_hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.MultiheadAttention, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            def stats() -> torch.Tensor:
                query = args[0] if args else kwargs["query"]
                key = args[1] if len(args) > 1 else kwargs.get("key", query)
                with torch.no_grad():
                    q, k = _project(module, query.detach(), key.detach())
                    mask = _mha_mask(
                        kwargs.get("attn_mask"),
                        kwargs.get("key_padding_mask"),
                        kwargs.get("is_causal", False),
                        q,
                        k,
                    )
                return head_stats(q, k, mask, None)

            self.record(name, stats)

        return hook


class _SdpaHeads(TorchFunctionMode):
    """F.scaled_dot_product_attention calls outside nn.MultiheadAttention, named after their module."""

    def __init__(self, watch: HeadWatch) -> None:
        super().__init__()
        self.watch = watch

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention and self.watch.tracker.current not in self.watch.mha:
            self.watch.record(f"{self.watch.tracker.current}:sdpa", lambda: _sdpa_stats(*args, **kwargs))
        return func(*args, **kwargs)


def _sdpa_stats(
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
    return head_stats(query, key, mask, scale)
