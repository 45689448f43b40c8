"""Domain errors. Every one of them means "could not run": the CLI maps them to exit 2."""

from __future__ import annotations


class GradcheckError(Exception):
    """A failure the user can fix: `message` says what and where, `hint` how."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ConfigError(GradcheckError):
    """A bad option value, config key or config file."""


class TargetError(GradcheckError):
    """The TARGET could not be found, imported or built."""


class InputError(GradcheckError):
    """No input could be built for the model, or the model rejected it."""


class DeviceError(GradcheckError):
    """The requested device or dtype is not available here."""


class LossError(GradcheckError):
    """The model's output gives no usable loss."""


class NothingMeasuredError(GradcheckError):
    """The run produced no measurement to judge (no hook fired, no tensor loaded): never a verdict."""
