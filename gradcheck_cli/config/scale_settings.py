"""What `gradcheck scale` sweeps: the constructor key and its widths, the declared parametrization,
seeds and steps. Parsed and checked before torch loads (exit 2 naming the flag).

Torch-free: the CLI builds it, the worker reads it from `AnalyzeConfig.scale`.
"""

from __future__ import annotations

from dataclasses import dataclass

from gradcheck_cli.records.errors import ConfigError

PARAMETRIZATIONS = ("standard", "mup")
"""standard: PyTorch's fan-in init, one learning rate; mup: the maximal-update parametrization
(readout multiplier 1/width, hidden Adam lr 1/fan_in). docs/scaling.md has the expected exponents."""
MAX_SEEDS = 10
MAX_SCALE_STEPS = 20
"""t = 1..steps: t = 1 is the forward at init, each later t follows one optimizer step."""
MAX_SIZES = 12


@dataclass(frozen=True, slots=True, kw_only=True)
class ScaleSettings:
    key: str
    """The constructor keyword (or builtin --arch-opt) that sets the width, e.g. width or d_model."""
    widths: tuple[int, ...]
    parametrization: str = "standard"
    seeds: int = 3
    steps: int = 3


def parse_sweep(text: str, option: str = "--width") -> tuple[str, tuple[int, ...]]:
    """`width=64,128,256,512` -> ("width", (64, 128, 256, 512)): at least two distinct positive
    integers, sorted (the slope is fitted on their logarithms)."""
    example = f"write it as KEY=SIZES, e.g. {option} width=64,128,256,512"
    key, sep, values = text.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise ConfigError(f"cannot read {option} {text!r}", example)
    try:
        sizes = tuple(sorted({int(part) for part in values.split(",") if part.strip()}))
    except ValueError:
        raise ConfigError(f"cannot read the sizes in {option} {text!r}: integers only", example) from None
    if len(sizes) < 2:
        raise ConfigError(f"{option} {text!r} needs at least two different sizes to fit a slope", example)
    if len(sizes) > MAX_SIZES or sizes[0] < 1:
        raise ConfigError(f"{option} takes 2 to {MAX_SIZES} positive sizes, got {text!r}", example)
    return key, sizes


def scale_settings(width: str, parametrization: str, seeds: int, steps: int) -> ScaleSettings:
    key, widths = parse_sweep(width)
    if parametrization not in PARAMETRIZATIONS:
        raise ConfigError(
            f"--parametrization must be one of {', '.join(PARAMETRIZATIONS)}, got {parametrization!r}"
        )
    if not 1 <= seeds <= MAX_SEEDS:
        raise ConfigError(f"--seeds must be an integer from 1 to {MAX_SEEDS}, got {seeds}")
    if not 2 <= steps <= MAX_SCALE_STEPS:
        raise ConfigError(
            f"--steps must be an integer from 2 to {MAX_SCALE_STEPS}, got {steps}",
            "t = 1 is the forward at init and t = 2 the first after an optimizer step: the update "
            "exponent needs at least 2",
        )
    return ScaleSettings(key=key, widths=widths, parametrization=parametrization, seeds=seeds, steps=steps)
