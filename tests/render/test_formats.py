"""Every Format has a renderer that turns a Report into text (the exhaustiveness test), and every
format can combine several targets into one document."""

from __future__ import annotations

import pytest

from gradcheck_cli.render import Format, get_renderer, render_reports


@pytest.mark.parametrize("fmt", list(Format))
def test_every_format_renders(fmt: Format, vanishing_report, healthy_report) -> None:
    renderer = get_renderer(fmt, width=80)
    assert renderer.format == fmt.value
    single = renderer.render(vanishing_report)
    both = render_reports(fmt, [vanishing_report, healthy_report], width=80)
    assert "vanishing-gradients" in single
    assert "vanishing-gradients" in both and "builtin:residual-mlp" in both


def _with_later_stages(report):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from gradcheck_cli.records.comparison import BaselineComparison, Comparison, LayerChange
    from gradcheck_cli.records.fixes import Measured, TriedFix
    from gradcheck_cli.records.stats import TrainingHistory

    before = Measured(findings=("vanishing-gradients",), ratio=1e-9)
    tried = TriedFix(fix="residual", where="m.py:9", applied=True, note="wrapped 3 blocks", before=before,
                     after=Measured(findings=(), ratio=0.4), cleared=("vanishing-gradients",))  # fmt: skip
    fell = LayerChange(name="layers.0", old_ratio=1e-3, new_ratio=1e-6, orders=-3.0, old_status="ok",
                       new_status="vanishing", regressed=True)  # fmt: skip
    comparison = Comparison(layers=(fell,), new_findings=("vanishing-gradients",), resolved_findings=(),
                            kept_findings=(), added_layers=(), removed_layers=(), orders_limit=1.0)  # fmt: skip
    return replace(
        report,
        training=TrainingHistory(optimizer="sgd", lr=0.01, loss=(2.5, 2.1), grad_norms={}),
        fixes=(tried,),
        baseline=BaselineComparison(file="base.json", comparison=comparison),
    )


@pytest.mark.parametrize("fmt", ["rich", "markdown", "html", "json"])
def test_every_format_shows_training_baseline_and_tried_fixes(fmt: str, vanishing_report) -> None:
    text = get_renderer(fmt, width=100).render(_with_later_stages(vanishing_report))
    assert "base.json" in text and "layers.0" in text  # the baseline comparison
    assert "residual" in text and "wrapped 3 blocks" in text  # the tried fix
    assert "2.1" in text and "sgd" in text  # the training history


def test_the_format_names_the_registries_and_the_option_table_agree() -> None:
    """One list of formats: the option table's --format choices and `gradcheck report`'s come from
    records.formats, and every name there has a renderer and every renderer a name."""
    from gradcheck_cli.config.options import FORMATS, OPTIONS
    from gradcheck_cli.records.errors import ConfigError
    from gradcheck_cli.records.formats import RUN_FORMATS
    from gradcheck_cli.render import RENDERERS
    from gradcheck_cli.render.history import RUN_RENDERERS

    assert set(RENDERERS) == set(Format)
    assert set(RUN_RENDERERS) == set(RUN_FORMATS)
    assert tuple(f.value for f in Format) == FORMATS
    fmt_option = next(o for o in OPTIONS if o.field == "format")
    assert fmt_option.check is not None
    for name in FORMATS:
        fmt_option.check(name)  # accepted
    with pytest.raises(ConfigError):
        fmt_option.check("pdf")
    for fmt, make in RENDERERS.items():
        assert get_renderer(fmt).format == fmt.value, make
