"""Files gradcheck reads or writes, checked before any work: what a name really is.

- `not_regular(path)`: a FIFO, socket or device behind a name (symlinks followed) is named, so
  that every reader refuses it up front instead of waiting for a writer that never comes
  (`--weights fifo`, `gradcheck report fifo`) or reading an endless device (`/dev/zero`).
- `check_regular(path, what)`: that refusal as an exit-2 error naming the option.
- `real_path(path)`: a name resolved through every symlink, so an output named `out/x.json` that
  links to `model.py` is judged as `model.py`.
- `PROTECTED_SUFFIXES`: files a report never replaces, whatever their name links from.

Torch-free.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gradcheck_cli.records.errors import GradcheckError

PROTECTED_SUFFIXES = (".py", ".pyi", ".pyw", ".ipynb")
"""Source code: a report never replaces it (the model file, a module it imports, a notebook)."""

MAX_TEXT_BYTES = 1 << 30
"""The largest text file gradcheck reads whole (a monitor's JSON lines, a JSON report): 1 GiB, far
above a year of logged steps, well below what would exhaust the memory of a laptop."""

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a folder"),
)


def not_regular(path: Path) -> str | None:
    """What `path` is when it exists and is not a regular file ("a FIFO (named pipe)"), else None.

    Symlinks are followed; a name that does not exist, or cannot be looked at, is None (the
    caller's own "not found" or permission message is the better one)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return None if stat.S_ISREG(mode) else "not a regular file"


def check_regular(
    path: Path,
    what: str,
    error: type[GradcheckError] = GradcheckError,
    *,
    folder_ok: bool = False,
    hint: str | None = None,
) -> None:
    """Refuse a FIFO, socket or device (and a folder unless `folder_ok`) before anything reads it."""
    kind = not_regular(path)
    if kind is None or (folder_ok and kind == "a folder"):
        return
    if kind == "a folder":
        raise error(f"{what} {path} is a folder", hint or "name the file itself")
    raise error(
        f"{what} {path} is {kind}, not a regular file: gradcheck reads only regular files",
        hint or "pass the file itself (a FIFO or a device would make the run wait or read without end)",
    )


def check_size(path: Path, what: str, error: type[GradcheckError] = GradcheckError) -> None:
    """Refuse a text file larger than MAX_TEXT_BYTES before reading it whole."""
    try:
        size = os.stat(path).st_size
    except OSError:
        return
    if size > MAX_TEXT_BYTES:
        raise error(
            f"{what} {path} is {size / (1 << 30):.1f} GiB: more than the {MAX_TEXT_BYTES >> 30} GiB "
            "gradcheck reads as text",
            "pass a smaller file (a monitor's jsonl= of one run, one JSON report)",
        )


def real_path(path: Path) -> Path:
    """`path` absolute, with every symlink resolved (a dangling or looping link as far as it goes)."""
    try:
        return Path(os.path.realpath(path))
    except (OSError, ValueError):
        return path.absolute()


def write_report_file(path: Path, text: str) -> None:
    """Write `text` to what `path` resolves to, by replacing the file rather than truncating it: a
    hard link that shares the old file (`x.json` linked to `model.py`) keeps its content, and a
    reader never sees half a report. A FIFO or device (`/dev/stdout`) is written in place."""
    real = real_path(path)
    real.parent.mkdir(parents=True, exist_ok=True)
    if not_regular(real) is not None:
        with open(real, "w", encoding="utf-8") as stream:
            stream.write(text)
        return
    temporary = real.with_name(f".{real.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "x", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, real)
    finally:
        if temporary.exists():
            temporary.unlink()
