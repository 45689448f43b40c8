"""The one error boundary every command ends in: whatever stops a command (a catchable signal
included) is exit 2 with one `error:` line saying what gradcheck was doing and one `hint:` line. `--debug` adds the traceback
and keeps exit 2. Exit 1 is left to findings (and to `compare`'s regressions).

Torch-free.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import typer

from gradcheck_cli.records.errors import GradcheckError
from gradcheck_cli.run.reaper import Stopped, signals_raise

F = TypeVar("F", bound=Callable[..., Any])
DEBUG_HINT = "re-run with --debug for the traceback"

_activity: list[str] = []
_command: list[str] = ["analyze"]


@contextlib.contextmanager
def doing(what: str) -> Iterator[None]:
    """Name what the command is doing, for the error line should something unexpected stop it.

    On an exception the name stays, for the boundary to read; each command starts afresh."""
    _activity.append(what)
    yield
    _activity.pop()


def print_error(message: str, hint: str | None, details: str | None = None) -> None:
    """`error:` and `hint:` on stderr; `details` (a traceback) first, when given."""
    from gradcheck_cli.render.escape import visible

    # Messages quote the user's code (exception texts, names): never an escape sequence on stderr.
    message, hint = visible(message), visible(hint) if hint else hint
    sys.stdout.flush()
    if details:
        sys.stderr.write(details if details.endswith("\n") else details + "\n")
    lines = message.splitlines() or [""]
    typer.echo(f"error: {lines[0]}", err=True)
    for line in lines[1:]:  # a message may carry indented detail lines (the inputs tried, ...)
        typer.echo(line, err=True)
    # Every error gets a hint line; where the raiser gave none, point at the command's help.
    typer.echo(f"hint: {hint or f'`gradcheck {_command[0]} --help` describes every option'}", err=True)


def command_boundary(command: str) -> Callable[[F], F]:
    """Wrap a Typer command: known errors, unexpected ones and Ctrl-C all become exit 2."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            debug = bool(kwargs.get("debug"))
            _activity[:] = [f"running `gradcheck {command}`"]
            _command[0] = command
            try:
                with signals_raise():
                    return func(*args, **kwargs)
            except (typer.Exit, typer.Abort, typer.TyperException):
                raise  # Typer's own exits and usage errors (bad option values exit 2 already)
            except GradcheckError as error:
                print_error(error.message, error.hint, _traceback() if debug else None)
            except KeyboardInterrupt:
                print_error(f"interrupted while {_activity[-1]}", "the command did not finish")
            except Stopped as stop:  # SIGHUP, SIGUSR1, SIGTERM, ...: exit 2, never death by signal
                print_error(f"{stop} while {_activity[-1]}", "the command did not finish")
            except Exception as exc:  # a bug, or something the environment did: still exit 2
                first = (str(exc).strip().splitlines() or [""])[0]
                print_error(
                    f"unexpected {type(exc).__name__} while {_activity[-1]}"
                    + (f": {first}" if first else ""),
                    DEBUG_HINT if not debug else "if the traceback points into gradcheck, please report it",
                    _traceback() if debug else None,
                )
            raise typer.Exit(2)

        return wrapper  # type: ignore[return-value]

    return decorate


def _traceback() -> str:
    return traceback.format_exc()


class BoundedTyper(typer.Typer):
    """A Typer app whose every command, including any added later, ends in the error boundary."""

    def command(self, name: str | None = None, **kwargs: Any) -> Callable[[F], F]:
        register = super().command(name, **kwargs)

        def decorate(func: F) -> F:
            register(command_boundary(name or func.__name__.replace("_", "-"))(func))
            return func

        return decorate
