"""Mutation testing of one module with mutmut (`make mutation MODULE=backend.payouts.service`).

mutmut copies the code into `mutants/`, plants one change at a time (a flipped comparison, a
changed constant, a dropped argument, ...) and runs the tests that reach the mutated function;
a mutant that no test notices "survived". Configuration: `[tool.mutmut]` in pyproject.toml.
The surviving mutants of the money paths, and why each is kept, are in docs/testing.md.

    python -m devtools.mutation backend.payouts.service [--children 1]

Not part of CI: one module takes from minutes to an hour on two cores. Results accumulate in
`mutants/` between runs (mutmut re-tests only what changed).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from devtools.processes import REPO_ROOT

MUTMUT = Path(sys.executable).with_name("mutmut")


def results(module: str) -> Counter[str]:
    """Status -> count of the module's mutants (killed, survived, no tests, timeout, ...)."""
    out = subprocess.run(
        [str(MUTMUT), "results", "--all", "true"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    prefix = re.escape(module) + r"\.x"
    counts: Counter[str] = Counter()
    for line in out.splitlines():
        name, _, status = line.strip().partition(": ")
        if re.match(prefix, name):
            counts[status] += 1
    return counts


def survivors(module: str) -> list[str]:
    out = subprocess.run(
        [str(MUTMUT), "results"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [
        line.strip()
        for line in out.splitlines()
        if line.strip().startswith(module + ".x") and line.strip().endswith(": survived")
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description="mutation testing of one module")
    parser.add_argument("module", help="dotted module name, e.g. backend.payouts.service")
    parser.add_argument("--children", type=int, default=1, help="mutants tested at once")
    args = parser.parse_args()
    mutants = REPO_ROOT / "mutants"
    mutants.mkdir(exist_ok=True)
    link = mutants / "node_modules"  # Anvil and the compiler, where the copied code looks
    if not link.exists():
        link.symlink_to(REPO_ROOT / "node_modules")
    run = subprocess.run(
        [str(MUTMUT), "run", "--max-children", str(args.children), f"{args.module}.*"],
        cwd=REPO_ROOT,
        check=False,
    )
    if run.returncode != 0:
        # No score from a failed run: mutmut stops when the unmutated suite fails.
        raise SystemExit(f"mutmut run failed (exit {run.returncode}): no score recorded")
    counts = results(args.module)
    for name in survivors(args.module):
        print(f"survived: {name}  (show it: mutmut show {name.split(':')[0]})")
    tested = counts["killed"] + counts["survived"] + counts["timeout"]
    score = 100 * (counts["killed"] + counts["timeout"]) / tested if tested else 0.0
    print(
        f"{args.module}: killed={counts['killed']} survived={counts['survived']} "
        f"timeout={counts['timeout']} no_tests={counts['no tests']} score={score:.0f}%"
    )


if __name__ == "__main__":
    main()
