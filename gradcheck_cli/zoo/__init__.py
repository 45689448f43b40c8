"""Built-in architectures: each failure mode beside its fix. The index is torch-free."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gradcheck_cli.errors import ConfigError
from gradcheck_cli.hints import did_you_mean


@dataclass(frozen=True, slots=True, kw_only=True)
class ArchSpec:
    name: str
    summary: str
    factory: str
    """'module:function' under gradcheck_cli.zoo, imported only when the model is built."""
    options: Mapping[str, Any]
    """Defaults of the options --arch-opt may override."""
    inputs: Callable[[Mapping[str, Any]], tuple[str, ...]]
    """The --input specs this model is fed, given its options."""
    expect: str = "healthy"
    """What the analysis should say: healthy, or the finding id it is built to show."""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def resolve_options(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        unknown = [k for k in overrides if k not in self.options]
        if unknown:
            hint = did_you_mean(unknown[0], tuple(self.options))
            known = ", ".join(f"{k}={v}" for k, v in self.options.items())
            raise ConfigError(
                f"builtin:{self.name} has no option {unknown[0]!r} (options: {known})",
                hint,
            )
        return {**self.options, **overrides}


def _mlp_inputs(o: Mapping[str, Any]) -> tuple[str, ...]:
    return (f"{o['batch']}x{o['in_features']}",)


def _cnn_inputs(o: Mapping[str, Any]) -> tuple[str, ...]:
    return (f"{o['batch']}x3x{o['size']}x{o['size']}",)


def _rnn_inputs(o: Mapping[str, Any]) -> tuple[str, ...]:
    return (f"{o['batch']}x{o['seq_len']}x{o['input_size']}",)


def _tokens(o: Mapping[str, Any]) -> tuple[str, ...]:
    return (f"int:{o['batch']}x{o['seq_len']}:{o['vocab']}",)


_MLP = {"depth": 20, "width": 64, "in_features": 32, "classes": 10, "batch": 32}
_CNN = {"depth": 10, "channels": 16, "size": 16, "classes": 10, "batch": 8}
_RNN = {"seq_len": 200, "input_size": 16, "hidden": 64, "layers": 1, "classes": 10, "batch": 8}

ARCHITECTURES: dict[str, ArchSpec] = {
    spec.name: spec
    for spec in (
        ArchSpec(
            name="sigmoid-mlp",
            summary="deep plain MLP with sigmoid, no normalisation: vanishes",
            factory="mlp:plain_mlp",
            options={**_MLP, "activation": "sigmoid"},
            inputs=_mlp_inputs,
            expect="vanishing-gradients",
        ),
        ArchSpec(
            name="tanh-mlp",
            summary="deep plain MLP with tanh at PyTorch's default init: vanishes",
            factory="mlp:plain_mlp",
            options={**_MLP, "activation": "tanh"},
            inputs=_mlp_inputs,
            expect="vanishing-gradients",
        ),
        ArchSpec(
            name="relu-mlp-bad-init",
            summary="deep ReLU MLP initialised at twice He scale: explodes",
            factory="mlp:plain_mlp",
            options={**_MLP, "activation": "relu", "init_gain": 2.0},
            inputs=_mlp_inputs,
            expect="exploding-gradients",
        ),
        ArchSpec(
            name="residual-mlp",
            summary="residual MLP with pre-LayerNorm blocks: healthy",
            factory="mlp:residual_mlp",
            options={**_MLP, "depth": 12, "activation": "gelu"},
            inputs=_mlp_inputs,
        ),
        ArchSpec(
            name="sigmoid-cnn",
            summary="deep plain CNN with sigmoid, no normalisation: vanishes",
            factory="cnn:plain_cnn",
            options={**_CNN, "activation": "sigmoid", "batchnorm": False},
            inputs=_cnn_inputs,
            expect="vanishing-gradients",
        ),
        ArchSpec(
            name="bn-cnn",
            summary="the same depth with BatchNorm and ReLU: healthy",
            factory="cnn:plain_cnn",
            options={**_CNN, "activation": "relu", "batchnorm": True},
            inputs=_cnn_inputs,
        ),
        ArchSpec(
            name="vanilla-rnn",
            summary="tanh nn.RNN over 200 steps: vanishes through time",
            factory="rnn:recurrent",
            options={**_RNN, "cell": "rnn", "gate_bias": 0.0},
            inputs=_rnn_inputs,
            expect="vanishing-through-time",
        ),
        ArchSpec(
            name="gru",
            summary="nn.GRU over 200 steps, update-gate bias 3: keeps its gradient",
            factory="rnn:recurrent",
            options={**_RNN, "cell": "gru", "gate_bias": 3.0},
            inputs=_rnn_inputs,
        ),
        ArchSpec(
            name="lstm",
            summary="nn.LSTM over 200 steps, forget-gate bias 3: keeps its gradient",
            factory="rnn:recurrent",
            options={**_RNN, "cell": "lstm", "gate_bias": 3.0},
            inputs=_rnn_inputs,
        ),
        ArchSpec(
            name="transformer",
            summary="small pre-LN transformer language model with tied embeddings: healthy",
            factory="transformer:pre_ln_transformer",
            options={"depth": 4, "d_model": 64, "heads": 4, "vocab": 256, "seq_len": 32, "batch": 8},
            inputs=_tokens,
        ),
    )
}


def get_arch(name: str) -> ArchSpec:
    if name not in ARCHITECTURES:
        hint = did_you_mean(name, tuple(ARCHITECTURES)) or "run `gradcheck zoo` to list them"
        raise ConfigError(f"no built-in architecture {name!r}", hint)
    return ARCHITECTURES[name]
