"""The `gradcheck` command's entry point: the fast answers first, then the command line (`run.cli`).

`gradcheck --version` prints from here, before typer, rich or any option is imported. A help
request (`--help`, `-h`, or no arguments at all) imports typer's rich help formatter without the
two rich modules it imports at module level for features gradcheck's help never uses (Markdown
markup, which needs markdown_it and pygments; rich tracebacks, which need rich.pretty and attrs):
they stand in as `Deferred` classes that import the real module on first use, so the help text
is the same, made in about half the time. Everything else goes straight to `run.cli`.

Torch-free, and light: only the standard library at import.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Sequence
from typing import Any

HELP_FLAGS = frozenset({"--help", "-h"})
VERSION_FLAGS = frozenset({"--version", "-V"})
DEFERRED = (("rich.markdown", "Markdown"), ("rich.traceback", "Traceback"))
"""What typer's help formatter imports and gradcheck's help never uses: module, class."""


def main() -> None:
    argv = sys.argv[1:]
    if len(argv) == 1 and argv[0] in VERSION_FLAGS:
        from gradcheck_cli import __version__

        sys.stdout.write(f"gradcheck {__version__}\n")
        return
    if wants_help(argv):
        import_help_formatter()
    from gradcheck_cli.run.cli import main as run

    run()


def wants_help(argv: Sequence[str]) -> bool:
    """Help will be printed: a help flag before any `--`, or no arguments (`no_args_is_help`)."""
    before = argv[: argv.index("--")] if "--" in argv else argv
    return not argv or any(arg in HELP_FLAGS for arg in before)


def import_help_formatter() -> None:
    """`typer.rich_utils` with DEFERRED standing in while it is imported; afterwards the real
    modules import normally. Where typer differs from what this expects, the normal import."""
    if "typer.rich_utils" in sys.modules or any(name in sys.modules for name, _ in DEFERRED):
        return
    stand_ins = {name: _stand_in(name, attribute) for name, attribute in DEFERRED}
    sys.modules.update(stand_ins)
    try:
        import typer.rich_utils  # noqa: F401  (imported now, with the stand-ins)
    except Exception:  # another typer: forget the attempt, and let the command import it as usual
        for name in [m for m in sys.modules if m == "typer" or m.startswith("typer.")]:
            del sys.modules[name]
    finally:
        for name, module in stand_ins.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]


def _stand_in(module: str, attribute: str) -> types.ModuleType:
    stand_in = types.ModuleType(module, "gradcheck_cli.run.entry: imported on first use")
    setattr(stand_in, attribute, deferred(module, attribute))
    return stand_in


class _DeferredMeta(type):
    """Attribute reads on the class (`Traceback.from_exception`) go to the real class."""

    _real: Callable[[], Any]

    def __getattr__(cls, name: str) -> Any:
        return getattr(cls._real(), name)


def deferred(module: str, attribute: str) -> type:
    """A class standing for `module.attribute`: calling it (or reading a class attribute) imports
    the module and returns what the real class gives."""
    import importlib

    def real() -> Any:
        return getattr(importlib.import_module(module), attribute)

    def new(cls: type, *args: Any, **kwargs: Any) -> Any:
        return real()(*args, **kwargs)

    namespace = {"__new__": new, "_real": staticmethod(real), "__module__": __name__}
    return _DeferredMeta(attribute, (), namespace)
