"""The one error boundary every command ends in: whatever stops a command (a catchable signal
included) is exit 2 with one `error:` line saying what gradcheck was doing and one `hint:` line. `--debug` adds the traceback
and keeps exit 2. Exit 1 is left to findings (and to `compare`'s regressions).

Torch-free.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
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


class StdoutClosed(GradcheckError):
    """The command has output for stdout, and stdout is closed (`>&-`) or its reader went away."""

    def __init__(self, broken: bool = False) -> None:
        what = "stdout's reader closed the pipe" if broken else "stdout is closed"
        super().__init__(
            f"{what}: the output could not be written",
            "redirect stdout to a file or a pipe that reads it all, or write the report with --output FILE",
        )


class _ClosedStdout(io.TextIOBase):
    """Stands in for a stdout that was closed when gradcheck started: writing to it is exit 2."""

    def write(self, text: str) -> int:
        if text:
            raise StdoutClosed()
        return 0

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def guard_standard_streams() -> None:
    """A command started with stdout or stderr closed (`>&-`, `2>&-`): fd 1 and 2 are pointed at
    the null device, so that no pipe the run opens lands on them (a worker would read its job
    from the wrong file); writing output for a closed stdout is then a clean exit 2."""
    for fd, name in ((1, "stdout"), (2, "stderr")):
        if getattr(sys, name) is not None:
            continue
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_WRONLY)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        if name == "stdout":
            sys.stdout = _ClosedStdout()
        else:
            sys.stderr = open(fd, "w", encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115


def _silence_broken_stdout() -> None:
    """After a broken pipe, stdout points at the null device: the exit flush cannot fail again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)


def command_boundary(command: str) -> Callable[[F], F]:
    """Wrap a Typer command: known errors, unexpected ones and Ctrl-C all become exit 2."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            debug = bool(kwargs.get("debug"))
            _activity[:] = [f"running `gradcheck {command}`"]
            _command[0] = command
            guard_standard_streams()
            try:
                with signals_raise():
                    return func(*args, **kwargs)
            except (typer.Exit, typer.Abort, typer.TyperException):
                raise  # Typer's own exits and usage errors (bad option values exit 2 already)
            except BrokenPipeError:
                _silence_broken_stdout()
                error = StdoutClosed(broken=True)
                print_error(error.message, error.hint)
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
    """A Typer app whose every command, including any added later, ends in the error boundary
    (and converts its plain option values without pydantic: `coercion`)."""

    def __init__(self, **kwargs: Any) -> None:
        from gradcheck_cli.run.coercion import PlainGroup

        super().__init__(**{"cls": PlainGroup, **kwargs})

    def command(self, name: str | None = None, **kwargs: Any) -> Callable[[F], F]:
        from gradcheck_cli.run.coercion import PlainCommand

        kwargs.setdefault("cls", PlainCommand)  # option values converted without pydantic
        register = super().command(name, **kwargs)

        def decorate(func: F) -> F:
            register(command_boundary(name or func.__name__.replace("_", "-"))(func))
            return func

        return decorate
