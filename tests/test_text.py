"""The text helper: agreement with a count, lists, and role keys turned into prose."""

from gradcheck_cli.records.text import (
    amount,
    common,
    count,
    earliest_of,
    join,
    plural,
    role_layers,
    span,
    verb,
)


def test_counts_agree_with_one_and_many() -> None:
    assert [count(n, "error") for n in (0, 1, 2)] == ["0 errors", "1 error", "2 errors"]
    assert count(1, "batch") == "1 batch" and count(3, "batch") == "3 batches"
    assert count(1200, "step") == "1,200 steps"
    assert plural("order of magnitude", 1) == "order of magnitude"
    assert amount(1.0, "order of magnitude") == "1 order of magnitude"
    assert amount(2.5, "order of magnitude") == "2.5 orders of magnitude"
    assert verb("get", 1) == "gets" and verb("get", 2) == "get" and verb("are", 1) == "is"


def test_lists_and_spans() -> None:
    assert join(["a"]) == "a" and join(["a", "b"]) == "a and b" and join(["a", "b", "c"], "or") == "a, b or c"
    assert span(["layers.0", "layers.2"]) == "layers.0 and layers.2"
    assert span([f"layers.{i}" for i in range(0, 18, 2)]) == "layers.0 … layers.16 (9 modules)"
    assert common(["Linear", "Linear"]) == "Linear" and common(["Linear", "Conv2d"]) == ""


def test_role_keys_become_prose_without_placeholders() -> None:
    assert earliest_of(7, "layers.#", "Linear", 10) == "the 7 earliest of the 10 `layers.*` Linear layers"
    assert earliest_of(11, "#", "Linear", 12) == "the first 11 of 12 Linear layers"
    assert earliest_of(1, "#", "Linear", 12) == "the first of 12 Linear layers"
    assert earliest_of(12, "#", "Linear", 12) == "all 12 Linear layers"
    assert role_layers("blocks.#.conv1@8x8", "Conv2d", 4) == "the 4 `blocks.*.conv1` Conv2d layers at 8x8"
    assert "#" not in role_layers("#", "", 3)
