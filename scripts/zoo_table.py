"""Regenerate docs/diagnostics.md: one section per finding id from the rule docstrings, and
the table of the built-in zoo's verdicts from real runs.

    python scripts/zoo_table.py            # rule sections and zoo table (runs every builtin)
    python scripts/zoo_table.py --rules    # rule sections only (no torch, instant)
    python scripts/zoo_table.py --check    # exit 1 if the rule sections are out of date
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "diagnostics.md"
RULES = ("<!-- rules:start -->", "<!-- rules:end -->")
ZOO = ("<!-- zoo-table:start -->", "<!-- zoo-table:end -->")


def rule_sections() -> str:
    from gradcheck_cli.judge.rules import every_rule

    parts = []
    for spec in sorted(every_rule(), key=lambda r: r.id):
        doc = re.sub(r"^## ", "#### ", spec.doc, flags=re.MULTILINE)
        head = f"### `{spec.id}`\n\nDefault severity: **{spec.severity.value}**. Fixes: "
        parts.append(head + ", ".join(f"`{f}`" for f in spec.fixes) + f".\n\n{doc}\n")
    return "\n".join(parts)


def zoo_table(batches: int, seed: int) -> str:
    from gradcheck_cli.config.analyze_config import build_config
    from gradcheck_cli.load.zoo import ARCHITECTURES
    from gradcheck_cli.run.pipeline import analyze_target

    rows = [
        "| model | built to show | verdict | findings | key number |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, spec in ARCHITECTURES.items():
        report = analyze_target(build_config(f"builtin:{name}", {"batches": batches, "seed": seed}, {}))
        found = ", ".join(f"`{f.id}` ({f.severity.value})" for f in report.findings) or "none"
        rows.append(
            f"| `builtin:{name}` | {spec.expect} | {report.summary.status} | {found} | {key_number(report)} |"
        )
        print(f"{name}: {report.summary.status}", file=sys.stderr)
    note = f"\nMeasured with `--batches {batches} --seed {seed}` by `python scripts/zoo_table.py`.\n"
    return "\n".join(rows) + "\n" + note


def key_number(report: object) -> str:
    from gradcheck_cli.judge.rules.profile import depth_groups

    if report.through_time:  # type: ignore[attr-defined]
        tt = report.through_time[0]  # type: ignore[attr-defined]
        return f"horizon {tt.horizon}/{tt.steps} steps, x{tt.per_step_factor:.2f} per step"
    groups = depth_groups([row.stats for row in report.layers], 3)  # type: ignore[attr-defined]
    if not groups:
        return "no repeated role to compare"
    worst = max(groups, key=lambda g: abs(math.log10(g.first_to_last)) if g.first_to_last > 0 else math.inf)
    return f"first/last output gradient {worst.first_to_last:.1e} across `{worst.key}`"


def replace_between(text: str, markers: tuple[str, str], body: str) -> str:
    start, end = markers
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    return f"{before}{start}\n{body}\n{end}{after}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rules", action="store_true", help="regenerate the rule sections only")
    parser.add_argument("--check", action="store_true", help="fail if the rule sections are stale")
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    text = DOC.read_text()
    updated = replace_between(text, RULES, rule_sections())
    if args.check:
        return 0 if updated == text else 1
    if not args.rules:
        updated = replace_between(updated, ZOO, zoo_table(args.batches, args.seed))
    DOC.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
