"""The module graph of gradcheck_cli, read statically with ast: no import cycle anywhere.

Every import counts, including those inside functions (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "gradcheck_cli"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, modules: set[str]) -> set[str]:
    """The gradcheck_cli modules `path` imports (`from pkg import mod` counts as mod)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in modules}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(paths)
    # A package's __init__ importing its own submodules is how registries register: not a cycle.
    return {
        name: {m for m in imported(path, modules) if m != name and not m.startswith(name + ".")}
        for name, path in paths.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt] if nxt in path else [*path, nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_the_package_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_checker_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_pipeline_is_the_only_module_importing_the_pipeline_stages_in_order() -> None:
    graph = import_graph()
    assert "gradcheck_cli.run.pipeline" not in graph["gradcheck_cli.repair.measure"]
    assert "gradcheck_cli.measure.collect" in graph["gradcheck_cli.repair.measure"]


# The stage folders, bottom to top: a module may import its own folder and any folder below it.
LAYERS = ["records", "judge", "config", "load", "measure", "repair", "render", "run", "monitor"]


def folder_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for module, targets in graph.items():
        here = folder_of(module)
        for target in targets:
            there = folder_of(target)
            if here and there and here != there and LAYERS.index(there) > LAYERS.index(here):
                wrong.append(f"{module} -> {target}")
    return sorted(wrong)


def test_every_module_lives_in_a_stage_folder() -> None:
    unplaced = [m for m in import_graph() if m.count(".") >= 1 and folder_of(m) not in LAYERS]
    unplaced = [m for m in unplaced if m not in {"gradcheck_cli.__main__"}]
    assert not unplaced, unplaced


def test_no_folder_imports_a_folder_above_it() -> None:
    assert upward_imports(import_graph()) == []


def test_the_layer_check_finds_an_upward_import() -> None:
    graph = {
        "gradcheck_cli.records.stats": {"gradcheck_cli.measure.probe"},
        "gradcheck_cli.measure.probe": set(),
    }
    assert upward_imports(graph) == ["gradcheck_cli.records.stats -> gradcheck_cli.measure.probe"]
