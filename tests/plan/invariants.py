"""Checks shared by the property tests: what must hold after any sequence of events."""

from __future__ import annotations

from collections import Counter, defaultdict

from backend.plan.config import MATRIX_SIZE
from backend.plan.memory import MemoryPool, Step
from backend.plan.types import ReserveAction, RewardKind, RewardStatus

_NO_OWNER = -1


def check_step_conservation(steps: list[Step]) -> None:
    """Each step's lines sum to its inflow, to the wei (DESIGN §4 conservation)."""
    for i, step in enumerate(steps):
        total = sum(line.amount for line in step.lines)
        assert all(line.amount > 0 for line in step.lines), step
        for line in step.lines:
            assert (line.kind is RewardKind.COMPANY) == (line.reason is not None), line
        if step.event == "registration":
            follow = steps[i + 1]
            assert follow.event == "placement" and follow.result is not None
            assert total + follow.inflow == step.inflow
        elif step.event in ("placement", "retopup"):
            assert total == step.inflow, step
        if step.result is not None:
            result = step.result
            assert len(result.progressions) == sum(
                1 for e in result.reserve_effects if e.action is ReserveAction.REINVEST
            )
            reinvests = [e for e in result.reserve_effects if e.action is ReserveAction.REINVEST]
            for effect, progression in zip(reinvests, result.progressions, strict=True):
                assert effect.amount == progression.amount + sum(x.amount for x in effect.lines)
                assert (effect.level, effect.slot) == (
                    progression.from_level,
                    progression.from_slot,
                )
                assert progression.level == effect.level + 1


def check_ledger(pool: MemoryPool) -> None:
    """Σ reward lines (net of reserves consumed by progressions) == Σ inflows == liabilities,
    and each node's reserve is exactly its outstanding reserved lines."""
    assert pool.steps is not None
    check_step_conservation(pool.steps)
    lines_total = sum(line.amount for step in pool.steps for line in step.lines)
    lines_total += sum(
        x.amount
        for step in pool.steps
        if step.result is not None
        for effect in step.result.reserve_effects
        for x in effect.lines
    )
    assert lines_total - pool.reinvested == pool.inflow
    assert pool.liabilities() == pool.inflow
    assert min(pool.pending) >= 0 and min(pool.held) >= 0
    outstanding: dict[tuple[int, int], int] = defaultdict(int)
    completions: Counter[tuple[int, int]] = Counter()
    for step in pool.steps:
        for line in step.lines:
            if line.status is RewardStatus.RESERVED:
                assert line.recipient_id != pool.company_id, "company income is never reserved"
                assert line.level is not None and line.earner_slot is not None
                outstanding[(line.level, line.earner_slot)] += line.amount
        effects = step.result.reserve_effects if step.result else ()
        if step.event == "release":
            effects = ()
        for effect in effects:
            key = (effect.level, effect.slot)
            assert outstanding[key] == effect.amount, "an effect moves all of a node's reserve"
            outstanding[key] = 0
            for x in effect.lines:
                assert x.kind is RewardKind.RESERVE_EXCESS
        if step.result is not None:
            for c in step.result.completions:
                completions[(c.level, c.slot)] += 1
    # admin releases are not in step results; the node views say what is left
    for level, tree in enumerate(pool.levels):
        if level == 0:
            continue
        for slot, reserve in enumerate(tree.reserved):
            assert reserve >= 0
            key = (level, slot)
            if reserve:
                assert outstanding[key] == reserve, (key, reserve, outstanding[key])
            if tree.owner[slot] == pool.company_id:
                assert reserve == 0
            assert completions[key] == (1 if tree.completed[slot] else 0), key
    assert pool.completions == sum(completions.values())
    placed = [(s.result.node.level, s.result.node.slot) for s in pool.steps if s.result is not None]
    assert len(placed) == len(set(placed)), "no slot is used twice"
    assert len(placed) == pool.placements
    assert all(n == 1 for n in completions.values()), "a matrix completes exactly once"


def check_trees(pool: MemoryPool) -> None:
    """Heap shape: every placed node's parent is placed; at most two children each; matrix
    counts and completion flags agree with the confirmed descendants; levels >= 2 are prefixes
    (breadth-first complete); level 1 is complete except below live leases; one node per
    owner per level."""
    pool.check_node_invariants()
    for level, tree in enumerate(pool.levels):
        if level == 0:
            continue
        placed = [s for s, o in enumerate(tree.owner) if o != _NO_OWNER]
        assert len(placed) == tree.count
        children: Counter[int] = Counter()
        for s in placed:
            if s:
                parent = (s - 1) // 2
                assert tree.owner[parent] != _NO_OWNER, (level, s)
                children[parent] += 1
        assert all(n <= 2 for n in children.values())
        owners = [tree.owner[s] for s in placed]
        assert len(set(owners)) == len(owners), "one node per owner per level"
        if level >= 2:
            assert placed == list(range(tree.count)), "levels >= 2 fill breadth-first"
        for s in placed:
            assert tree.filled[s] <= MATRIX_SIZE
    confirmed = pool.leases.confirmed_slots()
    assert confirmed == {s for s, o in enumerate(pool.levels[1].owner) if o != _NO_OWNER}
