"""Built-in architectures: each failure mode beside its fix. The index is torch-free."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gradcheck_cli.records.errors import ConfigError
from gradcheck_cli.records.hints import did_you_mean


@dataclass(frozen=True, slots=True, kw_only=True)
class ArchSpec:
    name: str
    summary: str
    factory: str
    """'module:function' under gradcheck_cli.load.zoo, imported only when the model is built."""
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
        for key, value in overrides.items():
            _check_option(self.name, key, value)
        resolved = {**self.options, **overrides}
        if "heads" in resolved and resolved["d_model"] % resolved["heads"]:
            raise ConfigError(
                f"builtin:{self.name}: d_model={resolved['d_model']} is not a multiple of heads={resolved['heads']}",
                "attention splits d_model evenly across the heads",
            )
        return resolved


# The documented range of every --arch-opt (`gradcheck zoo --options` prints it): (low, high) for
# numbers, a tuple of names for choices, bool for switches.
OPTION_RANGES: dict[str, tuple[float, float] | tuple[str, ...] | type[bool]] = {
    "depth": (1, 1000), "width": (1, 65536), "in_features": (1, 65536), "classes": (2, 65536),
    "batch": (1, 65536), "channels": (1, 4096), "size": (1, 1024), "seq_len": (1, 100000),
    "input_size": (1, 65536), "hidden": (1, 65536), "layers": (1, 64), "d_model": (1, 65536),
    "heads": (1, 256), "vocab": (2, 10_000_000), "init_gain": (1e-6, 100.0), "gate_bias": (-100.0, 100.0),
    "activation": ("sigmoid", "tanh", "relu", "gelu", "leaky-relu"), "cell": ("rnn", "gru", "lstm"),
    "batchnorm": bool,
}  # fmt: skip


def describe_range(key: str) -> str:
    allowed = OPTION_RANGES[key]
    if allowed is bool:
        return "true or false"
    if isinstance(allowed[0], str):
        return "one of " + ", ".join(str(a) for a in allowed)
    low, high = allowed
    return f"{low:g} to {high:g}"


def _check_option(arch: str, key: str, value: Any) -> None:
    allowed = OPTION_RANGES.get(key)
    if allowed is None:
        return
    if allowed is bool:
        ok = isinstance(value, bool)
    elif isinstance(allowed[0], str):
        ok = value in allowed
    else:
        low, high = allowed
        whole = isinstance(low, int) and isinstance(high, int)
        number = isinstance(value, int) if whole else isinstance(value, (int, float))
        ok = number and not isinstance(value, bool) and low <= value <= high
    if not ok:
        raise ConfigError(
            f"--arch-opt {key}={value!r} is out of range for builtin:{arch}: {key} must be {describe_range(key)}",
            "`gradcheck zoo --options` lists every option, its default and its range",
        )


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
