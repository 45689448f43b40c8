"""Structure the code keeps: docs/architecture.md names only modules that exist, modules stay
under 300 lines (only the option table is longer), no function is over 50 lines of code, and
torch's private names appear only in measure/compat.py."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gradcheck_cli"
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 50
LONG_MODULES = {
    "config/options.py": "the declarative option table: one entry per option",
    "run/cli.py": "the commands, each declared from the option table; its split (the analyze command's work out) is next",
}
PRIVATE_TORCH = re.compile(
    r"\b(?:torch|nn|F)\.(?:[A-Za-z]\w*\.)*_[A-Za-z]\w*"  # torch.nn.modules.conv._ConvNd, torch._foreach_norm
    r"|from torch[\w.]* import [^#\n]*\b_[A-Za-z]"  # from torch.nn.modules.batchnorm import _NormBase
)
COMPAT = "measure/compat.py"


def test_files_named_in_the_architecture_doc_exist() -> None:
    """Every module, folder and file docs/architecture.md names in backquotes (its recipes
    included: the files a new rule, option, format, sink or integration touches) exists, under
    gradcheck_cli/ or the repository root."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`([a-z0-9_/.-]+\.(?:py|md|toml|yaml))`", text))
    named |= set(re.findall(r"`([a-z_][a-z0-9_/]*/)`", text))
    assert len(named) > 50, f"the doc names too few files: {sorted(named)}"
    for recipe_file in ("measure/measurements.py", "config/command_options.py", "records/formats.py"):
        assert recipe_file in named, recipe_file
    missing = [name for name in named if not ((PACKAGE / name).exists() or (ROOT / name).exists())]
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"


MAX_FOLDERS = 12
MAX_TOP_LEVEL_MODULES = 3


def test_the_package_shows_the_architecture_in_few_folders() -> None:
    """`ls gradcheck_cli/` shows the stages: at most 12 folders and at most 3 modules besides
    `__init__.py`/`__main__.py`, and each stage folder says in its `__init__` docstring what it is."""
    folders = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__")
    modules = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert len(folders) <= MAX_FOLDERS, folders
    assert len(modules) <= MAX_TOP_LEVEL_MODULES, modules
    undocumented = [
        name
        for name in folders
        if (PACKAGE / name / "__init__.py").exists()
        and not ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text()))
    ]
    assert not undocumented, f"stage folders without an __init__ docstring: {undocumented}"


def test_modules_stay_short() -> None:
    long = {
        path.relative_to(PACKAGE).as_posix(): len(path.read_text().splitlines())
        for path in PACKAGE.rglob("*.py")
        if len(path.read_text().splitlines()) >= MAX_MODULE_LINES
    }
    unexplained = {name: lines for name, lines in long.items() if name not in LONG_MODULES}
    assert not unexplained, f"modules of {MAX_MODULE_LINES}+ lines: {unexplained}"


def _code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the first statement after the docstring to the end (rule docstrings are docs)."""
    body = node.body[1:] if ast.get_docstring(node) and len(node.body) > 1 else node.body
    return (node.end_lineno or node.lineno) - body[0].lineno + 1


def test_functions_stay_short() -> None:
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                and _code_lines(node) > MAX_FUNCTION_LINES
            ):
                long.append(
                    f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({_code_lines(node)} lines)"
                )
    assert not long, long


def test_private_torch_names_only_in_compat() -> None:
    found = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in PACKAGE.rglob("*.py")
        if path.relative_to(PACKAGE).as_posix() != COMPAT
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE_TORCH.search(line)
    ]
    assert not found, f"private torch names outside {COMPAT} (import them from there): {found}"


def test_the_private_name_check_finds_them() -> None:
    assert PRIVATE_TORCH.search("isinstance(m, nn.modules.conv._ConvNd)")
    assert PRIVATE_TORCH.search("from torch.nn.modules.batchnorm import _NormBase as NormBase")
    assert PRIVATE_TORCH.search("norms = torch._foreach_norm(grads)")
    assert not PRIVATE_TORCH.search("torch.nn.functional.relu(x); self._hooks = []")
    assert (PACKAGE / COMPAT).exists() and PRIVATE_TORCH.search((PACKAGE / COMPAT).read_text())
