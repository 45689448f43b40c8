"""dead-units, saturated-activations, no-gradient, nonfinite-gradients and the layer statuses."""

from __future__ import annotations

import pytest
from rule_factories import activation, layer, probe

from gradcheck_cli.judge.diagnose import diagnose
from gradcheck_cli.records.errors import ConfigError
from gradcheck_cli.records.findings import LayerStatus, Severity
from gradcheck_cli.records.stats import SourceRef


def ids(p):  # type: ignore[no-untyped-def]
    return {f.id: f for f in diagnose(p).findings}


@pytest.mark.parametrize(("dead", "severity"), [(0.3, None), (0.6, Severity.WARNING), (0.95, Severity.ERROR)])
def test_dead_units_severity_follows_the_fraction(dead: float, severity: Severity | None) -> None:
    found = ids(probe((layer("fc", 0),), (activation("act", dead=dead, after="fc"),)))
    assert (found["dead-units"].severity if "dead-units" in found else None) is severity


def test_dead_functional_relu_suggests_the_functional_replacement() -> None:
    act = activation("fc:F.relu", dead=1.0, type="F.relu", after="fc", source=SourceRef(file="m.py", line=7))
    finding = ids(probe((layer("fc", 0),), (act,)))["dead-units"]
    assert "F.leaky_relu" in finding.suggestions[0].text
    assert finding.suggestions[0].where == "m.py:7"
    assert diagnose(probe((layer("fc", 0),), (act,))).layer_status["fc"] is LayerStatus.DEAD


def test_saturation_is_its_own_finding_even_when_magnitudes_hold() -> None:
    layers = (layer("fc1", 0, 1.0, role="fc1"), layer("fc2", 1, 1.0, role="fc2"))
    found = ids(probe(layers, (activation("tanh", "tanh", saturated=0.8, after="fc1"),)))
    assert set(found) == {"saturated-activations"}
    assert found["saturated-activations"].severity is Severity.WARNING
    assert found["saturated-activations"].evidence["threshold"] == 0.5


def test_no_gradient_separates_never_called_from_cut_off() -> None:
    layers = (
        layer("encoder", 0, has_grad=False),
        layer("unused", 1, has_grad=False, hooked=False),
        layer("head", 2),
    )
    finding = ids(probe(layers))["no-gradient"]
    assert finding.severity is Severity.ERROR
    assert finding.evidence["never_called"] == ["unused"]
    assert finding.evidence["cut_off"] == ["encoder"]


def test_frozen_is_an_info_and_a_status_never_an_error() -> None:
    layers = (layer("backbone", 0, trainable=False, has_grad=False), layer("head", 1))
    diagnosis = diagnose(probe(layers))
    (finding,) = diagnosis.findings
    assert (finding.id, finding.severity) == ("no-gradient", Severity.INFO)
    assert finding.evidence["frozen"] == ["backbone"]
    assert diagnosis.layer_status["backbone"] is LayerStatus.FROZEN


def test_hooks_that_never_fired_are_listed_as_not_measured() -> None:
    layers = (layer("attn.out_proj", 0, float("nan"), hooked=False), layer("head", 1))
    (finding,) = diagnose(probe(layers)).findings
    assert finding.evidence["not_measured"] == ["attn.out_proj"]


def test_nonfinite_names_the_first_module_in_backward_order_and_the_op() -> None:
    layers = (layer("fc1", 0, nonfinite=3), layer("fc2", 1, nonfinite=1), layer("head", 2))
    p = probe(layers, nonfinite_op="log", nonfinite_source=SourceRef(file="m.py", line=12))
    finding = ids(p)["nonfinite-gradients"]
    assert finding.evidence["first_in_backward"] == "fc2"
    assert finding.evidence["forward_op"] == "log"
    assert finding.suggestions[0].where == "m.py:12"
    assert "log(x + 1e-8)" in finding.suggestions[0].text


def test_unknown_threshold_is_a_config_error_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        diagnose(probe(), {"dead-units": {"fraktion": 0.2}})
    assert "fraction" in (info.value.hint or "")
