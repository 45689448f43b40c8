"""gradcheck: does the gradient flow through your PyTorch model, and what to change when it doesn't.

`analyze` and `GradientMonitor` are imported on first use, so `import gradcheck_cli` (and the
CLI's --help) stays free of torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["GradientMonitor", "__version__", "analyze"]

if TYPE_CHECKING:
    from gradcheck_cli.monitor.gradient_monitor import GradientMonitor
    from gradcheck_cli.run.api import analyze

_LAZY = {"analyze": "gradcheck_cli.run.api", "GradientMonitor": "gradcheck_cli.monitor.gradient_monitor"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gradcheck_cli' has no attribute {name!r}")
