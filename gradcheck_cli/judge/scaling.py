"""`gradcheck scale`'s verdict: from ScaleSamples (RMS per seed, width and step) to each module's
exponents against width, compared with what the declared parametrization predicts for its role
(`judge/scale_expectations.py`), and `width-exponent` findings. Torch-free."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from gradcheck_cli.judge.rules.width_exponent import WidthExponentLimits
from gradcheck_cli.judge.scale_causes import findings_for
from gradcheck_cli.judge.scale_expectations import expected, outside
from gradcheck_cli.records.report import summarize
from gradcheck_cli.records.scaling import (
    HEADLINE_STEP,
    QUANTITIES,
    ROLES,
    ModuleSamples,
    ModuleScaling,
    RoleScaling,
    ScaleReport,
    ScaleSamples,
)


def slope(widths: Sequence[int], values: Sequence[float | None]) -> float | None:
    """Least-squares slope of log(value) against log(width); None unless every value is positive."""
    if any(v is None or not v > 0 for v in values):
        return None
    xs = [math.log(w) for w in widths]
    ys = [math.log(v) for v in values if v is not None]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den


def _exponents(samples: ScaleSamples, module: ModuleSamples, quantity: str, t: int) -> list[float]:
    """One exponent per seed at step t (seeds where a width measured nothing are left out)."""
    grid = getattr(module, quantity)
    fitted = [slope(samples.widths, [row[t - 1] for row in seed]) for seed in grid]
    return [e for e in fitted if e is not None]


def _mean(values: Sequence[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def module_scaling(
    samples: ScaleSamples, module: ModuleSamples, parametrization: str, tolerance: float
) -> ModuleScaling:
    bands = expected(parametrization, module.role)
    headline = {q: _exponents(samples, module, q, HEADLINE_STEP[q]) for q in QUANTITIES}
    means = {q: _mean(headline[q]) for q in QUANTITIES}
    off = any(
        means[q] is not None and outside(means[q], bands[q], tolerance) != 0.0  # type: ignore[arg-type]
        for q in QUANTITIES
        if q in bands
    )
    checked = bool(bands) and any(means[q] is not None for q in QUANTITIES)
    by_step = {
        q: tuple(_mean(_exponents(samples, module, q, t)) for t in range(1, samples.steps + 1))
        for q in QUANTITIES
    }
    return ModuleScaling(
        name=module.name,
        role=module.role,
        kind=module.kind,
        fan_in=_dimension(module.fan_in),
        fan_out=_dimension(module.fan_out),
        forward=means["forward"],
        backward=means["backward"],
        update=means["update"],
        spread={q: round(max(v) - min(v), 4) for q, v in headline.items() if v},
        expected=bands,
        status="off" if off else ("ok" if checked else "unchecked"),
        by_step=by_step,
        rms={q: _mean_rms(getattr(module, q), HEADLINE_STEP[q]) for q in QUANTITIES},
    )


def _dimension(sizes: tuple[int, ...]) -> str:
    if not any(sizes):
        return "-"
    return "width" if len(set(sizes)) > 1 else str(sizes[0])


def _mean_rms(grid: tuple[tuple[tuple[float | None, ...], ...], ...], t: int) -> tuple[float | None, ...]:
    widths = len(grid[0]) if grid else 0
    out = []
    for w in range(widths):
        values = [seed[w][t - 1] for seed in grid if seed[w][t - 1] is not None]
        out.append(statistics.fmean(v for v in values if v is not None) if values else None)
    return tuple(out)


def role_summary(modules: Sequence[ModuleScaling], parametrization: str) -> tuple[RoleScaling, ...]:
    out = []
    for role in ROLES:
        members = [m for m in modules if m.role == role]
        if not members:
            continue
        means = {q: _mean([v for m in members if (v := getattr(m, q)) is not None]) for q in QUANTITIES}
        statuses = {m.status for m in members}
        status = "off" if "off" in statuses else ("ok" if "ok" in statuses else "unchecked")
        out.append(
            RoleScaling(
                role=role,
                modules=len(members),
                forward=means["forward"],
                backward=means["backward"],
                update=means["update"],
                expected=expected(parametrization, role),
                status=status,
            )
        )
    return tuple(out)


def judge_scaling(
    samples: ScaleSamples, parametrization: str, limits: WidthExponentLimits | None = None
) -> ScaleReport:
    tolerance = (limits or WidthExponentLimits()).tolerance
    modules = tuple(module_scaling(samples, m, parametrization, tolerance) for m in samples.modules)
    findings = findings_for(modules, parametrization, tolerance)
    return ScaleReport(
        target=samples.target,
        parametrization=parametrization,
        key=samples.key,
        widths=samples.widths,
        seeds=len(samples.seeds),
        steps=samples.steps,
        optimizer=samples.optimizer,
        device=samples.device,
        tolerance=tolerance,
        modules=modules,
        roles=role_summary(modules, parametrization),
        findings=findings,
        summary=summarize(findings),
        seconds=round(samples.seconds, 3),
    )
