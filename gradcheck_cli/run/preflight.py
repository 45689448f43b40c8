"""Checks that need more than one option's value, run before the analysis starts: a bad --output
or --arch-opt fails in a second, not after a ten-minute analysis, and a report never overwrites
the model file.

Torch-free.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from gradcheck_cli.config.analyze_config import AnalyzeConfig
from gradcheck_cli.records.errors import ConfigError
from gradcheck_cli.records.files import PROTECTED_SUFFIXES, check_regular, real_path


def check_configs(configs: Sequence[AnalyzeConfig], read: Sequence[Path] = ()) -> None:
    """`read`: files the run reads besides those its configs name (the config file)."""
    for config in configs:
        check_arch_opts(config)
        check_inputs(config)
    check_outputs(configs, read)


def check_inputs(config: AnalyzeConfig) -> None:
    """Files the run will read are regular files (or checkpoint folders): a FIFO or a device is
    refused here, before a worker starts, instead of making the run wait for a writer."""
    if config.target.kind == "file":
        check_regular(Path(config.target.location), "model file", ConfigError)
    for option, path in (("--weights", config.weights), ("--versus", config.versus)):
        if path is not None and str(path) != "init":
            check_regular(Path(path), option, ConfigError, folder_ok=True)
    if config.baseline is not None:
        check_regular(config.baseline, "--baseline", ConfigError)


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


def check_outputs(configs: Sequence[AnalyzeConfig], read: Sequence[Path] = ()) -> None:
    for config in configs:
        paths = [config.output] if config.output is not None else []
        paths += [path for _, path in config.reports]
        protected = {real_path(path): "the config file" for path in read} | _protected_files(config)
        for path in paths:
            check_output(path, protected)


def _protected_files(config: AnalyzeConfig) -> dict[Path, str]:
    """Files a report must never replace, each resolved through its symlinks, with what it is."""
    files: dict[Path, str] = {}
    for option, path in (
        ("--baseline", config.baseline),
        ("--versus", config.versus),
        ("--weights", config.weights),
    ):
        if path is not None and str(path) != "init":
            files[real_path(Path(path))] = f"the {option} file"
    if config.target.kind == "file":
        files[real_path(Path(config.target.location))] = "the model file itself"
    return files


def check_output(path: Path, protected: Mapping[Path, str], option: str = "--output") -> None:
    """A writable file path: not a folder, not a file the run reads, not source code, in a folder
    that exists or can be made. Judged on what the name resolves to: an `out/x.json` that is a
    symlink to `model.py` is `model.py`."""
    real = real_path(path)
    shown = f"{option} {path}" + (f" (a link to {real})" if path.is_symlink() else "")
    if path.is_dir():
        raise ConfigError(f"{shown} is a folder", f"name a file in it, e.g. {path / 'gradcheck.json'}")
    if real in protected:
        raise ConfigError(
            f"{shown} is {protected[real]}, which this run reads: the report would overwrite it",
            "name another file, e.g. --output gradcheck.json",
        )
    if real.suffix.lower() in PROTECTED_SUFFIXES and (real.exists() or path.is_symlink()):
        raise ConfigError(
            f"{shown} is Python source: a report never replaces code",
            "name a report file, e.g. --output gradcheck.json",
        )
    if real.exists() and not os.access(real, os.W_OK):
        raise ConfigError(f"{shown} is not writable", "check its permissions, or name another file")
    folder = _nearest_existing(real.parent)
    if not folder.is_dir():
        raise ConfigError(f"{shown}: {folder} is a file, not a folder", "name a path inside a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{shown}: cannot write in {folder}", "name a file in a folder you can write to")


def _nearest_existing(folder: Path) -> Path:
    folder = folder.absolute()
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return folder
