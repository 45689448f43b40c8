"""vanishing-gradients and exploding-gradients on hand-built gain profiles."""

from __future__ import annotations

import math

from rule_factories import activation, layer, probe, stack

from gradcheck_cli.judge.diagnose import diagnose
from gradcheck_cli.judge.rules.exploding_gradients import ExplodingLimits, exploding_gradients
from gradcheck_cli.judge.rules.profile import DepthGroup, depth_groups
from gradcheck_cli.judge.rules.vanishing_gradients import VanishingLimits, vanishing_gradients
from gradcheck_cli.records.findings import Severity


def vanishing(p):  # type: ignore[no-untyped-def]
    return list(vanishing_gradients(p, VanishingLimits()))


def exploding(p):  # type: ignore[no-untyped-def]
    return list(exploding_gradients(p, ExplodingLimits()))


def test_shrinking_stack_fires_with_its_numbers_and_its_bar() -> None:
    (finding,) = vanishing(probe(stack([1e-4, 1e-3, 1e-2, 1e-1, 1.0])))
    assert finding.severity is Severity.ERROR
    assert finding.evidence["orders"] == -4.0
    assert finding.evidence["threshold"] == 3.0
    assert finding.evidence["gain_db"] == [-20.0, -20.0, -20.0, -20.0]
    assert finding.layers == ("blocks.0.fc", "blocks.1.fc")  # more than 2 orders below the last


def test_drop_just_inside_the_threshold_is_healthy() -> None:
    assert vanishing(probe(stack([2e-3, 1e-2, 1e-1, 1.0]))) == []


def test_the_layer_where_the_signal_breaks_is_named() -> None:
    (finding,) = vanishing(probe(stack([1e-5, 1e-5, 1e-1, 1.0])))
    assert finding.evidence["breaks_at"] == "blocks.1.fc"
    assert "drops most entering blocks.1.fc" in finding.message


def test_norm_layers_and_biases_are_never_compared_with_weights() -> None:
    # LayerNorm gains get 1e-6 of a Linear's gradient in healthy models: not a vanishing signal.
    layers = stack([1.0, 1.0, 1.0]) + tuple(
        layer(f"blocks.{i}.ln", 10 + i, 1e-6, type="LayerNorm", kind="norm") for i in range(3)
    )
    assert vanishing(probe(layers)) == []


def test_roles_are_compared_separately() -> None:
    fc1 = stack([1.0, 1.0, 1.0], role="blocks.{}.fc1")
    fc2 = stack([1e-3, 1e-3, 1e-3], role="blocks.{}.fc2")
    groups = depth_groups(fc1 + fc2, 3)
    assert sorted(g.key for g in groups) == ["blocks.#.fc1", "blocks.#.fc2"]
    assert vanishing(probe(fc1 + fc2)) == []


def test_convolutions_are_compared_within_one_resolution() -> None:
    convs = tuple(
        layer(f"conv{i}", i, n, type="Conv2d", spatial=s, role=f"conv{i}")
        for i, (n, s) in enumerate([(1e-4, (32, 32)), (1e-4, (32, 32)), (1.0, (8, 8)), (1.0, (8, 8))])
    )
    assert vanishing(probe(convs)) == []


def test_tied_layers_are_left_out() -> None:
    layers = stack([1.0, 1.0, 1.0]) + (layer("lm_head", 9, 1e-6, shared_with="wte", role="blocks.#.fc"),)
    assert vanishing(probe(layers)) == []


def test_one_odd_batch_does_not_flip_the_verdict() -> None:
    # Three batches; in one of them the first layer's gradient collapses.
    first = layer("blocks.0.fc", 0, 0.5, batch_act_grad_norm=(0.5, 0.6, 1e-6))
    rest = tuple(layer(f"blocks.{i}.fc", i, 1.0, batch_act_grad_norm=(1.0, 1.0, 1.0)) for i in (1, 2))
    assert vanishing(probe((first, *rest))) == []
    group = DepthGroup(key="k", layers=(first, *rest))
    assert group.first_to_last == 0.5
    assert group.spread_orders() > 5


def test_absolute_floor_fires_without_a_depth_profile() -> None:
    layers = tuple(layer(f"fc{i}", i, 1.0, role=f"fc{i}", grad_weight_ratio=1e-9) for i in range(2))
    (finding,) = vanishing(probe(layers))
    assert finding.evidence["grad_weight_floor"] == 1e-7


def test_exact_zero_behind_a_dead_relu_is_dead_units_not_vanishing() -> None:
    layers = stack([0.0, 1.0, 1.0, 1.0])
    dead = activation("act", dead=1.0, after="blocks.0.fc")
    assert vanishing(probe(layers, (dead,))) == []


def test_a_zero_norm_never_gives_a_ratio() -> None:
    # 0 / x and x / 0 are no verdict: a zero is a gate, a dead unit or a missed hook, each
    # judged on its own ("infinitely smaller", "infx larger" are impossible).
    for norms in ([0.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0], [0.2, 0.0, 0.0]):
        assert vanishing(probe(stack(norms))) == []
        assert exploding(probe(stack(norms))) == []


def test_growth_is_an_error_without_normalisation() -> None:
    (finding,) = exploding(probe(stack([1e4, 1e3, 1e1, 1.0])))
    assert finding.severity is Severity.ERROR


def test_growth_in_a_batchnorm_resnet_is_a_warning_with_the_init_fix() -> None:
    (finding,) = exploding(probe(stack([1e3, 1e2, 1e1, 1.0]), has_normalization=True))
    assert finding.severity is Severity.WARNING
    assert [s.fix for s in finding.suggestions] == ["init"]
    (severe,) = exploding(probe(stack([1e5, 1e2, 1e1, 1.0]), has_normalization=True))
    assert severe.severity is Severity.ERROR


def test_ceiling_leaves_out_a_conv_feeding_batchnorm() -> None:
    # Scale-invariant: its grad/weight scales with 1/|w| and with the batch at tiny batches
    # (a batch-size artefact), and a large step only shrinks its next steps.
    conv = layer("conv", 0, 1.0, type="Conv2d", role="conv", grad_weight_ratio=5000.0)
    bn = layer("bn", 1, 1.0, type="BatchNorm2d", kind="norm", role="bn")
    assert exploding(probe((conv, bn), has_normalization=True)) == []
    (plain,) = exploding(probe((layer("fc", 0, 1.0, role="fc", grad_weight_ratio=5000.0),)))
    assert plain.severity is Severity.ERROR


def test_ceiling_counts_a_deliberately_small_head_at_its_natural_scale() -> None:
    # init_scale 5.8e-4 = 1e-3 of PyTorch's default: grad/weight 1100 is a small weight, not a big gradient
    head = layer("head", 0, 1.0, role="head", grad_weight_ratio=1100.0, init_scale=5.8e-4)
    assert exploding(probe((head,))) == []
    big = layer("head", 0, 1.0, role="head", grad_weight_ratio=1100.0, init_scale=0.58)
    (finding,) = exploding(probe((big,)))
    assert all("shrink" not in s.text for s in finding.suggestions)


def test_threshold_overrides_change_the_verdict() -> None:
    p = probe(stack([2e-3, 1e-2, 1e-1, 1.0]))
    assert [f.id for f in diagnose(p).findings] == []
    overridden = diagnose(p, {"vanishing-gradients": {"orders": 2.0}})
    assert [f.id for f in overridden.findings] == ["vanishing-gradients"]
    assert overridden.findings[0].evidence["threshold"] == 2.0
    assert math.isclose(float(overridden.findings[0].evidence["orders"]), -2.7, rel_tol=1e-2)
