"""The hand-worked examples of docs/plan.md, built with the engine and rendered as the exact
Markdown tables the document contains (test_worked_examples checks both the numbers, by hand,
and that the document shows what the engine does)."""

from __future__ import annotations

from collections.abc import Iterable

from backend.plan.config import PlanConfig
from backend.plan.memory import MemoryPool, Step
from backend.plan.types import RewardKind, RewardLine, RewardStatus

WEI = 10**18


def bnb_text(wei: int) -> str:
    """Exact decimal BNB (no float): 2700000000000000000 -> '2.7'."""
    whole, frac = divmod(wei, WEI)
    if not frac:
        return str(whole)
    return f"{whole}.{frac:018d}".rstrip("0")


def who(pid: int) -> str:
    return "company" if pid == 0 else f"P{pid}"


def chain_pool(plan: PlanConfig, registrations: int) -> MemoryPool:
    """Participant k registers k-th, sponsored by participant k-1 (P1 by the company), and
    is confirmed at once, so P_k sits at slot k."""
    pool = MemoryPool(plan, record=True)
    for k in range(1, registrations + 1):
        assert pool.register(k - 1) == k
    return pool


def _registration_steps(pool: MemoryPool) -> list[tuple[Step, Step]]:
    assert pool.steps is not None
    out = []
    for i, step in enumerate(pool.steps):
        if step.event == "registration":
            out.append((step, pool.steps[i + 1]))
    return out


def _company(lines: Iterable[RewardLine]) -> str:
    parts = [
        f"{bnb_text(x.amount)} {x.reason}{'' if x.generation is None else f' L{x.generation}'}"
        for x in lines
        if x.kind is RewardKind.COMPANY
    ]
    return "; ".join(parts)


def _pool_cell(lines: Iterable[RewardLine], kind: RewardKind) -> str:
    for x in lines:
        if x.kind is kind:
            status = "" if x.status is RewardStatus.PENDING else f" ({x.status})"
            return f"{bnb_text(x.amount)} → {who(x.recipient_id)}@{x.earner_slot}{status}"
    return "—"


def registrations_table(pool: MemoryPool, first: int, last: int) -> str:
    rows = [
        "| # | slot | sponsor | DIRECT | POOL_L1 (parent) | POOL_L2 (grandparent) "
        "| POOL_L3 (great-grandparent) | COMPANY (reason) | completions |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for k, (reg, placement) in enumerate(_registration_steps(pool), 1):
        if not first <= k <= last:
            continue
        assert placement.result is not None
        direct = reg.lines[0]
        completions = ", ".join(
            f"{who(c.owner_id)}@{c.slot}: reserve {bnb_text(c.reserve)} {c.outcome}"
            for c in placement.result.completions
        )
        rows.append(
            f"| {k} | {placement.result.node.slot} | {who(direct.recipient_id)} "
            f"| {bnb_text(direct.amount)} "
            f"| {_pool_cell(placement.lines, RewardKind.POOL_L1)} "
            f"| {_pool_cell(placement.lines, RewardKind.POOL_L2)} "
            f"| {_pool_cell(placement.lines, RewardKind.POOL_L3)} "
            f"| {_company(placement.lines)} | {completions or '—'} |"
        )
    return "\n".join(rows)


def earner_table(pool: MemoryPool, level: int, earner_slot: int) -> str:
    """Every line the node (level, earner_slot) earned, with its matrix count after it."""
    assert pool.steps is not None
    rows = [
        "| placement (level, slot) | kind | amount | status | matrix filled | reserve after |",
        "|---|---|---|---|---|---|",
    ]
    for step in pool.steps:
        result = step.result
        if result is None or result.node.level != level:
            continue
        for x in step.lines:
            if x.earner_slot == earner_slot and x.kind is not RewardKind.COMPANY:
                node = next(a for a in result.ancestors if a.slot == earner_slot)
                reserve = next(
                    (c.reserve for c in result.completions if c.slot == earner_slot),
                    node.reserved,
                )
                rows.append(
                    f"| ({level}, {result.node.slot}) | {x.kind} | {bnb_text(x.amount)} "
                    f"| {x.status} | {node.filled} | {bnb_text(reserve)} |"
                )
    return "\n".join(rows)


def lines_table(lines: Iterable[RewardLine]) -> str:
    rows = [
        "| recipient | kind | amount | status | level | earner slot | generation | reason |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def cell(v: object) -> str:
        return "—" if v is None else str(v)

    for x in lines:
        rows.append(
            f"| {who(x.recipient_id)} | {x.kind} | {bnb_text(x.amount)} | {x.status} "
            f"| {cell(x.level)} | {cell(x.earner_slot)} | {cell(x.generation)} "
            f"| {cell(x.reason)} |"
        )
    return "\n".join(rows)
