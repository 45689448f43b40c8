"""The worker side of `gradcheck scale`: measure every width and seed (`measure/scaling.py`), then
judge the exponents (`judge/scaling.py`); `run/worker.py` calls it for a config with `scale` set."""

from __future__ import annotations

from collections.abc import Callable

from gradcheck_cli.config.analyze_config import AnalyzeConfig
from gradcheck_cli.records.errors import TargetError
from gradcheck_cli.records.scaling import ScaleReport


def scale_target(config: AnalyzeConfig, progress: Callable[[str], None]) -> ScaleReport:
    """In the worker: measure every width and seed, then judge the exponents."""
    from gradcheck_cli.judge.scaling import judge_scaling
    from gradcheck_cli.measure.scaling import measure_widths

    assert config.scale is not None
    samples = measure_widths(config, progress)
    key = config.scale.key
    if not samples.modules:
        raise TargetError(
            "no module was measured at every width",
            f"does the model's structure change with {key}? gradcheck scale compares the modules "
            "present at every width by name",
        )
    if all(m.role == "fixed" for m in samples.modules):
        raise TargetError(
            f"no module's shape changed between {key}={samples.widths[0]} and {key}={samples.widths[-1]}",
            f"does the model use its {key} argument? name the keyword that sets the width",
        )
    progress("fitting exponents")
    return judge_scaling(samples, config.scale.parametrization)
