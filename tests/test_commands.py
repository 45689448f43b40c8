"""Every command the documentation and the tool print is one you can paste: each `gradcheck ...`
line of the README, of --help, of `zoo --options`, of error hints and of examples/ parses with the
CLI's own parser, and those that need no file of the user's run on CPU and exit as the text says."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from typer.main import get_command

from gradcheck_cli.load.zoo import ARCHITECTURES
from gradcheck_cli.run.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
EXIT_IN_TEXT = {  # what the README says each runnable command does
    "examples/vanishing_mlp.py": 1,
    "examples/healthy_mlp.py": 0,
    "examples/char_rnn.py": 1,
}


def parse(args: list[str]) -> None:
    """Parse as the CLI would, without running: unknown options and stray arguments fail."""
    group = get_command(app)
    ctx = group.make_context("gradcheck", list(args), resilient_parsing=False)
    protected = list(getattr(ctx, "protected_args", None) or getattr(ctx, "_protected_args", []))
    if protected or ctx.args:
        name, sub, rest = group.resolve_command(ctx, [*protected, *ctx.args])  # type: ignore[attr-defined]
        assert sub is not None, f"no command {name!r}"
        sub.make_context(name, rest, parent=ctx)


def readme_commands() -> list[list[str]]:
    """`gradcheck ...` lines of the README's shell blocks and inline code, comments and pipes cut."""
    blocks = re.findall(r"```(?:bash|sh|console)\n(.*?)```", README, flags=re.S)
    lines = [line for block in blocks for line in block.splitlines() if line.startswith("gradcheck ")]
    lines += re.findall(r"`(gradcheck (?:analyze|zoo|explain|init|compare)[^`]*)`", README)
    out = []
    for line in lines:
        line = line.split(" #")[0].split(" | ")[0].strip()
        if "..." in line or re.search(r"\b[A-Z]{2,}\b", line):  # a template with the user's values
            continue
        out.append(shlex.split(line)[1:])
    return out


def _zoo_table() -> dict[str, str]:
    """The README's builtin table: name -> what it shows ("healthy" or the finding)."""
    rows = re.findall(r"^\| ((?:`[\w-]+`(?:, )?)+) \| (.+?) \|$", README, flags=re.M)
    return {name: shows for names, shows in rows for name in re.findall(r"`([\w-]+)`", names)}


def expected_exit(args: list[str]) -> set[int] | None:
    """The exit codes the text allows, None for commands that need the user's files."""
    if args[0] in ("zoo", "explain", "--help", "--version"):
        return {0}
    target = next((a for a in args[1:] if not a.startswith("-")), None)
    if args[0] != "analyze" or target is None:
        return None
    if target.startswith("builtin:"):
        if "--arch-opt" in args:
            return {0, 1}  # the options change the model; it must still run
        shows = _zoo_table()[target.removeprefix("builtin:")]
        return {0} if shows.endswith("healthy") else {1}
    return {EXIT_IN_TEXT[target]} if target in EXIT_IN_TEXT else None


def test_every_readme_command_parses_and_the_runnable_ones_exit_as_documented(cli, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    commands = readme_commands()
    assert len(commands) > 15
    assert _zoo_table()["sigmoid-mlp"].endswith("vanishing-gradients") and set(ARCHITECTURES) <= set(
        _zoo_table()
    )
    ran = 0
    for args in commands:
        parse(args)
        code = expected_exit(args)
        if code is None:
            continue
        result = cli(*args, *(["--device", "cpu"] if args[0] == "analyze" else []))
        assert result.exit_code in code, (args, result)
        ran += 1
    assert ran >= 8


def test_help_examples_parse_and_run(cli) -> None:
    help_text = cli("--help").stdout
    examples = re.findall(r"^\s*(gradcheck analyze [^\n│]+?)\s*│?$", help_text, flags=re.M)
    assert examples, help_text
    for line in examples:
        args = shlex.split(line)[1:]
        parse(args)
    result = cli("analyze", "builtin:sigmoid-mlp", "--format", "json", "--batches", "1")
    assert result.exit_code == 1 and result.stdout.lstrip().startswith("{")


def test_zoo_options_lines_are_the_cli_syntax_and_give_the_defaults(cli) -> None:
    from gradcheck_cli.config.options import parse_key_values

    lines = cli("zoo", "--options").stdout.splitlines()
    for name, spec in ARCHITECTURES.items():
        options = next(lines[i + 1] for i, line in enumerate(lines) if line.startswith(f"builtin:{name} "))
        args = ["analyze", f"builtin:{name}", *shlex.split(options)]
        parse(args)  # `--arch-opt depth=5 width=32` would fail here: width=32 is a stray argument
        given = parse_key_values([a for a in args[2:] if a != "--arch-opt"], "--arch-opt")
        assert spec.resolve_options(given) == spec.resolve_options({}), name


def test_hints_name_commands_that_run(cli, monkeypatch) -> None:
    monkeypatch.chdir(ROOT / "tests" / "fixtures" / "wild")
    failed = cli("analyze", "resnet_cifar.py")
    hint = next(line for line in failed.stderr.splitlines() if line.startswith("hint:"))
    command = re.search(r"gradcheck (analyze [^;\s]+)", hint)
    assert command, hint
    args = shlex.split(command.group(1))
    parse(args)
    assert cli(*args, "--batches", "1", "--device", "cpu").exit_code in (0, 1)
    assert re.search(r"'[\w./]+:\w+\([A-Z_, ]+\)'", failed.stderr)  # call forms: placeholders in CAPITALS
    nothing = cli("analyze")
    assert (
        "builtin:sigmoid-mlp" in nothing.stderr
        and cli("analyze", "builtin:sigmoid-mlp", "--batches", "1").exit_code == 1
    )


def test_examples_do_what_their_text_says(cli, monkeypatch, tmp_path: Path) -> None:
    for script in EXIT_IN_TEXT:
        doc = (ROOT / script).read_text()
        assert f"gradcheck analyze {script}" in doc or script in README
    # The CI configs write reports beside themselves: run copies, so the checkout stays clean.
    shutil.copytree(ROOT / "examples" / "ci", tmp_path / "ci")
    monkeypatch.chdir(tmp_path)
    green = cli("analyze", "--config", "ci/gradcheck.yaml", "--format", "json", "--batches", "1")
    red = cli("analyze", "--config", "ci/failing/gradcheck.yaml", "--format", "json", "--batches", "1")
    assert green.exit_code == 0 and red.exit_code == 1, (green, red)
    assert (tmp_path / "ci" / "reports" / "gradcheck.xml").is_file()  # relative to the config's folder
    monitor = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "train_with_monitor.py")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env={"OMP_NUM_THREADS": "1", "PATH": ""},
    )  # fmt: skip
    assert monitor.returncode == 0, monitor.stderr
    assert "gradcheck step 0: error vanishing-gradients" in monitor.stderr
    assert "torch/nn/modules" not in monitor.stdout + monitor.stderr  # locations never point into torch
