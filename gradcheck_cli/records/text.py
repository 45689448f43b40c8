"""Counts, lists and role names in prose: one place for "1 error" / "2 errors".

Every message a person reads (rules, renderers, hints) builds its counts and lists here, so
agreement is right everywhere a count is 1 and role keys such as `layers.#` never leak into a
sentence. Torch-free and dependency-free.
"""

from __future__ import annotations

from collections.abc import Sequence

# Irregular plurals of the nouns gradcheck counts; everything else takes an "s".
_IRREGULAR = {
    "batch": "batches",
    "activation": "activations",
    "order of magnitude": "orders of magnitude",
    "this": "these",
    "parameter": "parameters",
    "decade": "decades",
}


def plural(word: str, n: int | float = 2) -> str:
    """`word` in the form that agrees with the count `n` (1 takes the singular)."""
    if n == 1:
        return word
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


_VERB_SINGULAR = {"are": "is", "were": "was", "have": "has", "do": "does"}


def verb(base: str, n: int) -> str:
    """A present-tense verb agreeing with a subject of `n` things: verb("get", 1) -> "gets",
    verb("get", 3) -> "get", verb("are", 1) -> "is"."""
    if n != 1:
        return base
    if base in _VERB_SINGULAR:
        return _VERB_SINGULAR[base]
    return base + ("es" if base.endswith(("s", "sh", "ch", "x", "o")) else "s")


def count(n: int, word: str) -> str:
    """`1 error`, `2 errors`, `0 warnings`, `3 batches`, `1,200 steps`."""
    return f"{n:,} {plural(word, n)}"


def amount(value: float, word: str, digits: int = 3) -> str:
    """A measured, possibly fractional quantity: `1 order of magnitude`, `2.5 orders of magnitude`."""
    shown = f"{value:.{digits}g}"
    return f"{shown} {plural(word, float(shown))}"


def common(values: Sequence[str]) -> str:
    """The one value all items share (a layer type for "Linear layers"), else ""."""
    distinct = set(values)
    return next(iter(distinct)) if len(distinct) == 1 else ""


def join(items: Sequence[str], last: str = "and") -> str:
    """`a`, `a and b`, `a, b and c` (`last="or"` for alternatives)."""
    items = [str(i) for i in items]
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {last} {items[-1]}"


def span(names: Sequence[str], noun: str = "module") -> str:
    """Names of several modules in a short form: `layers.0`, `layers.0 and layers.2`,
    `layers.0 … layers.16 (9 modules)`."""
    if len(names) <= 2:
        return join(names)
    return f"{names[0]} … {names[-1]} ({count(len(names), noun)})"


def role_name(key: str) -> str:
    """A depth group's key as prose: `layers.#` -> "`layers.*`", `#` -> "" (a bare
    Sequential has no role name), `blocks.#.fc1@8x8` -> "`blocks.*.fc1`"."""
    role = key.split("@", 1)[0]
    if role.replace("#", "").strip(".") == "":
        return ""
    return f"`{role.replace('#', '*')}`"


def role_layers(key: str, kind: str, total: int) -> str:
    """All the layers of a group: "the 10 `layers.*` Linear layers", "the 12 Linear layers",
    "the 4 Conv2d layers at 8x8"."""
    role = role_name(key)
    at = f" at {key.split('@', 1)[1]}" if "@" in key else ""
    words = " ".join(w for w in (role, kind) if w)
    return f"the {total} {words} {plural('layer', total)}{at}"


def earliest_of(n: int, key: str, kind: str, total: int) -> str:
    """Part of a group, counted from the input: "the 7 earliest of the 10 `layers.*` Linear
    layers"; a bare Sequential reads "the first 11 of 12 Linear layers"; all of them reads
    "all 12 Linear layers"; one reads "the earliest of the 10 …"."""
    role = role_name(key)
    at = f" at {key.split('@', 1)[1]}" if "@" in key else ""
    words = " ".join(w for w in (role, kind) if w)
    if n >= total:
        return f"{'both' if total == 2 else f'all {total}'} {words} {plural('layer', total)}{at}"
    if not role:
        head = "the first" if n == 1 else f"the first {n}"
        return f"{head} of {total} {words} {plural('layer', total)}{at}"
    head = "the earliest" if n == 1 else f"the {n} earliest"
    return f"{head} of the {total} {words} {plural('layer', total)}{at}"


def named(name: str) -> str:
    """A module name inside a sentence: `layer 0` for a bare Sequential's index (a lone "0" reads
    as a number), the name itself otherwise."""
    return f"layer {name}" if name.isdigit() else name
