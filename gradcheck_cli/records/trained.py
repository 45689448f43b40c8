"""Records about trained states: the checkpoint loaded by --weights and the --versus comparison.

Plain frozen records (torch-free), filled by `weights` and `versus` and read by rules and renderers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyMismatch:
    """One checkpoint key that did not fit the model, with the closest key on the other side."""

    key: str
    closest: str | None = None
    detail: str = ""
    """For a shape mismatch: 'checkpoint 64x10, model 32x10'."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointInfo:
    """What --weights loaded and how its keys were mapped onto the model."""

    path: str
    format: str
    """e.g. 'state_dict', 'Lightning checkpoint', 'safetensors', 'safetensors (3 shards)'."""
    container_key: str | None = None
    """The key of the dict that held the state_dict ('state_dict', 'model', ...), if any."""
    stripped_prefixes: tuple[str, ...] = ()
    """Prefixes removed from the checkpoint's keys, in order ('module.', '_orig_mod.', 'model.')."""
    added_prefix: str | None = None
    """A prefix added to the checkpoint's keys (it holds a submodule of the model)."""
    loaded: int = 0
    """Tensors copied into the model."""
    model_tensors: int = 0
    """Tensors (parameters and buffers) in the model's state_dict."""
    at_init: tuple[str, ...] = ()
    """--weights-partial: model keys the checkpoint did not provide (they stay at init)."""
    unexpected: tuple[str, ...] = ()
    """--weights-partial: checkpoint keys the model has no place for."""
    shape_mismatched: tuple[str, ...] = ()
    """--weights-partial: keys skipped because the shapes differ (they stay at init)."""
    ignored: tuple[str, ...] = ()
    """Keys outside the stripped prefix (a Lightning module's loss, an EMA copy), not loaded."""
    step: int | None = None
    epoch: int | None = None
    optimizer_state: bool = False
    """The checkpoint holds an optimizer state (used by --steps when its parameters match)."""
    seconds: float = 0.0

    @property
    def mapping(self) -> str:
        """How keys were mapped, in words."""
        parts = (
            [f"stripped {', '.join(repr(p) for p in self.stripped_prefixes)}"]
            if self.stripped_prefixes
            else []
        )
        if self.added_prefix:
            parts.append(f"added {self.added_prefix!r}")
        return "; ".join(parts) if parts else "as saved"


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerVersus:
    """One layer measured in both states (this run and the reference)."""

    name: str
    grad_norm: tuple[float, float]
    """(this state, reference state)."""
    grad_weight_ratio: tuple[float, float]
    weight_norm: tuple[float, float]


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivationVersus:
    name: str
    dead_fraction: tuple[float, float]
    saturated_fraction: tuple[float, float]


@dataclass(frozen=True, slots=True, kw_only=True)
class HorizonVersus:
    module: str
    horizon: tuple[int, int]
    per_step_factor: tuple[float, float]


@dataclass(frozen=True, slots=True, kw_only=True)
class CellGateVersus:
    module: str
    gate: str
    saturated_fraction: tuple[float, float]


@dataclass(frozen=True, slots=True, kw_only=True)
class AttentionVersus:
    name: str
    entropy: tuple[float, float]
    collapsed_fraction: tuple[float, float]
    max_logit: tuple[float, float]


@dataclass(frozen=True, slots=True, kw_only=True)
class Versus:
    """--versus: the same batches and seed measured on a reference state ('init' or another file)."""

    reference: str
    """'init' (the model as built, before --weights and --steps) or the other checkpoint's path."""
    layers: tuple[LayerVersus, ...] = ()
    activations: tuple[ActivationVersus, ...] = ()
    through_time: tuple[HorizonVersus, ...] = ()
    gates: tuple[CellGateVersus, ...] = ()
    attention: tuple[AttentionVersus, ...] = ()
    loss: tuple[float, float] = (float("nan"), float("nan"))


@dataclass(frozen=True, slots=True, kw_only=True)
class CellGateSaturation:
    """Gates of one nn.LSTM/nn.GRU on the first batch: the fraction of gate values in a flat tail."""

    module: str
    type: str
    layers: int
    gates: dict[str, float]
    """Gate name (input/forget/cell/output, or reset/update/new) -> saturated fraction, all layers."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AttentionStats:
    """Attention probabilities at one site (an nn.MultiheadAttention or an F.scaled_dot_product_attention call)."""

    name: str
    """The module name, or '<module>:sdpa' for a functional call inside that module."""
    entropy: float
    """Mean over queries of the entropy over the keys each may see, divided by its maximum (1 uniform)."""
    collapsed_fraction: float
    """Fraction of queries putting more than 99% of their attention on one key."""
    max_logit: float
    """Largest |q·k·scale| among allowed keys."""
    queries: int = 0
