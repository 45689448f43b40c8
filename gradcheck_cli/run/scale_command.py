"""`gradcheck scale TARGET --width KEY=SIZES`: check the options, run the sweep in the worker
process (as `analyze` runs: the user's code never runs in the CLI's process), render, exit code.
The worker side is `run/scale_pipeline.py`.

Torch-free at import.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from gradcheck_cli.config.analyze_config import AnalyzeConfig, build_config
from gradcheck_cli.config.options import values_from_flags
from gradcheck_cli.config.scale_settings import scale_settings
from gradcheck_cli.records.findings import FailOn
from gradcheck_cli.records.scaling import ScaleReport
from gradcheck_cli.run.boundary import doing, print_error

SHARED = (
    "lr",
    "inputs",
    "labels",
    "init_args",
    "arch_opts",
    "loss",
    "device",
    "optimizer",
    "seed",
    "timeout",
)
"""The scale options that are analyze's options (same normalisers and checks)."""


def scale_config(params: dict[str, Any]) -> AnalyzeConfig:
    """The AnalyzeConfig the worker runs, its `scale` settings set; exit 2 on a bad value."""
    from gradcheck_cli.run.preflight import check_configs

    flags = values_from_flags({name: params[name] for name in SHARED})
    flags |= {"format": params["format"], "output": params["output"], "fail_on": params["fail_on"]}
    flags["debug"] = params["debug"]
    settings = scale_settings(params["width"], params["parametrization"], params["seeds"], params["steps"])
    config = dataclasses.replace(build_config(params["target"], flags, {}), scale=settings)
    check_configs([config])
    if config.target.kind == "builtin":
        from gradcheck_cli.run.preflight import check_arch_opts

        check_arch_opts(
            dataclasses.replace(config, arch_opts={**config.arch_opts, settings.key: settings.widths[-1]})
        )
    return config


def scale_run(params: dict[str, Any], *, width: int, color: bool) -> int:
    """The `scale` command; returns the exit code."""
    with doing("reading the options"):
        config = scale_config(params)
    outcome = _run(config)
    if not isinstance(outcome, ScaleReport):
        print_error(outcome.message, outcome.hint, outcome.details if config.debug else None)
        return 2
    from gradcheck_cli.render.scale import SCALE_RENDERERS

    text = SCALE_RENDERERS[config.format or "rich"](outcome, width)
    with doing("writing the report"):
        _write(text, config.output)
    code = 1 if any(FailOn(config.fail_on).fails(f.severity) for f in outcome.findings) else 0
    where = f"; wrote {config.output}" if config.output is not None else ""
    print(
        f"gradcheck scale: {outcome.summary.status}, {len(outcome.modules)} modules at "
        f"{len(outcome.widths)} widths, {len(outcome.findings)} findings{where}",
        file=sys.stderr,
    )
    return code


def _run(config: AnalyzeConfig) -> Any:
    from gradcheck_cli.run.progress import progress_for
    from gradcheck_cli.run.supervisor import run_targets

    progress = progress_for([config.target.raw])
    try:
        return run_targets([config], progress, timeout=config.timeout)[0]
    finally:
        progress.close()


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    from gradcheck_cli.records.files import write_report_file

    write_report_file(output, text)
