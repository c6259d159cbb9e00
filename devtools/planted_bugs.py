"""Plant each of the bugs the ledger's tests must catch, one at a time, and check that the
suite fails with it in place (issue "Tests that guard the ledger"; docs/testing.md).

    python -m devtools.planted_bugs            # every bug
    python -m devtools.planted_bugs frozen     # one bug, by name

Each bug is a textual change of today's code. The file is restored from memory afterwards
(even on Ctrl-C), never from git, so uncommitted work is safe. Exit status 1 if any bug
survives (the suite stayed green with it), 2 if a bug no longer applies (the code moved on:
update the bug with it).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass

from devtools.processes import REPO_ROOT

TESTS = [
    "tests/listener",
    "tests/payouts",
    "tests/settlement",
    "tests/ledger",
    "tests/e2e",
    "tests/users",
]


@dataclass(frozen=True)
class Bug:
    name: str
    what: str
    path: str
    replacements: tuple[tuple[str, str], ...]


BUGS = (
    Bug(
        "deep-reorg",
        "the listener no longer halts when the block under its cursor changed",
        "listener/sync.py",
        (('if block["hash"].to_0x_hex() != cursor.last_block_hash:', "if False:"),),
    ),
    Bug(
        "confirmation-depth",
        "the listener ignores the confirmation depth and settles the head block",
        "listener/sync.py",
        (
            (
                "return int(await self.w3.eth.block_number) - self.confirmations",
                "return int(await self.w3.eth.block_number)",
            ),
        ),
    ),
    Bug(
        "frozen",
        "a frozen participant's pending rewards are put into a payout batch",
        "backend/payouts/repository.py",
        (("            User.is_frozen.is_(False),\n", ""),),
    ),
    Bug(
        "resign",
        "a batch in a state other than built (expired, executed) is sent to the signer again",
        "backend/payouts/service.py",
        (
            (
                "    if batch.status != BatchStatus.BUILT:\n"
                '        raise BatchWrongState(f"batch {batch_id} is {batch.status}", '
                "state=str(batch.status))\n"
                "    signed = await signer.sign(",
                "    signed = await signer.sign(",
            ),
        ),
    ),
    Bug(
        "payout-mismatch",
        "a PayoutExecuted whose amount differs from the batch line is accepted silently",
        "backend/payouts/service.py",
        (
            ("    if int(line.amount) != amount:\n", "    if False:\n"),
            ("    if moved != amount:\n", "    if False:\n"),
        ),
    ),
    Bug(
        "deferred-as-paid",
        "a PayoutDeferred is recorded as paid instead of claimable",
        "backend/payouts/service.py",
        (("RewardStatus.CLAIMABLE if deferred else RewardStatus.PAID", "RewardStatus.PAID"),),
    ),
    Bug(
        "balance-drift",
        "a balance move adds to the bucket it should subtract from",
        "backend/rewards/service.py",
        (("self._d[user_id][src] -= amount", "self._d[user_id][src] += amount"),),
    ),
)


def plant(bug: Bug) -> str:
    """Apply `bug`; returns the original text of its file."""
    path = REPO_ROOT / bug.path
    original = path.read_text()
    text = original
    for old, new in bug.replacements:
        if text.count(old) != 1:
            raise LookupError(f"{bug.name}: {old!r} is not found exactly once in {bug.path}")
        text = text.replace(old, new)
    path.write_text(text)
    return original


def check(bug: Bug) -> tuple[bool, str, float]:
    """(caught, pytest's summary line, seconds) with `bug` in place."""
    original = plant(bug)
    started = time.monotonic()
    try:
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *TESTS],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        )
    finally:
        (REPO_ROOT / bug.path).write_text(original)
    lines = [ln for ln in run.stdout.splitlines() if ln.strip()]
    failed = [ln for ln in lines if ln.startswith("FAILED")]
    summary = failed[0] if failed else (lines[-1] if lines else "")
    return run.returncode != 0, summary, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"bugs to plant: {[b.name for b in BUGS]}")
    args = parser.parse_args()
    chosen = [b for b in BUGS if not args.names or b.name in args.names]
    survived = stale = 0
    for bug in chosen:
        try:
            caught, summary, seconds = check(bug)
        except LookupError as exc:
            print(f"STALE     {bug.name}: {exc}", flush=True)
            stale += 1
            continue
        verdict = "caught  " if caught else "SURVIVED"
        survived += not caught
        print(f"{verdict}  {bug.name:<19} {seconds:5.0f} s  {bug.what}\n          {summary}")
    print(f"{len(chosen) - survived - stale} of {len(chosen)} planted bugs caught")
    raise SystemExit(2 if stale else 1 if survived else 0)


if __name__ == "__main__":
    main()
