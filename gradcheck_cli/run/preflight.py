"""Checks that need more than one option's value, run before the analysis starts: a bad --output
or --arch-opt fails in a second, not after a ten-minute analysis, and a report never overwrites
the model file.

Torch-free.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from gradcheck_cli.config.analyze_config import AnalyzeConfig
from gradcheck_cli.records.errors import ConfigError


def check_configs(configs: Sequence[AnalyzeConfig]) -> None:
    for config in configs:
        check_arch_opts(config)
    check_outputs(configs)


def check_arch_opts(config: AnalyzeConfig) -> None:
    """--arch-opt sets a builtin's options; elsewhere it would be silently ignored."""
    target = config.target
    if target.kind != "builtin":
        if config.arch_opts:
            raise ConfigError(
                f"--arch-opt only applies to builtin:NAME targets, not to {target.raw}",
                "pass constructor arguments of your model with --init KEY=VALUE",
            )
        return
    from gradcheck_cli.load.zoo import get_arch

    get_arch(target.location).resolve_options(config.arch_opts)


def check_outputs(configs: Sequence[AnalyzeConfig]) -> None:
    for config in configs:
        paths = [config.output] if config.output is not None else []
        paths += [path for _, path in config.reports]
        protected = _protected_files(config)
        for path in paths:
            check_output(path, protected)


def _protected_files(config: AnalyzeConfig) -> set[Path]:
    """Files a report must never replace: the model file (and the baseline it is compared with)."""
    files = set()
    if config.target.kind == "file":
        files.add(Path(config.target.location).resolve())
    return files


def check_output(path: Path, protected: set[Path]) -> None:
    """A writable file path: not a folder, not the model file, in a folder that exists or can be made."""
    if path.is_dir():
        raise ConfigError(
            f"--output {path} is a folder", f"name a file in it, e.g. {path / 'gradcheck.json'}"
        )
    if path.resolve() in protected:
        raise ConfigError(
            f"--output {path} is the model file itself: the report would overwrite it",
            "name another file, e.g. --output gradcheck.json",
        )
    if path.suffix == ".py" and path.exists():
        raise ConfigError(
            f"--output {path} is Python source: a report never replaces code",
            "name a report file, e.g. --output gradcheck.json",
        )
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"--output {path} is not writable", "check its permissions, or name another file")
    folder = _nearest_existing(path.parent)
    if not folder.is_dir():
        raise ConfigError(f"--output {path}: {folder} is a file, not a folder", "name a path inside a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(
            f"--output {path}: cannot write in {folder}", "name a file in a folder you can write to"
        )


def _nearest_existing(folder: Path) -> Path:
    folder = folder.absolute()
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return folder
