"""Queries for level trees, nodes, placements and level-1 slot leases. Every query is indexed
and touches O(1) rows (or the few rows of one lease step): nothing here walks or loads a tree."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from backend.models import (
    LeaseStatus,
    Placement,
    PlacementSource,
    PlacementStatus,
    Pool,
    PoolNode,
    SlotLease,
    User,
)

# Built once: an alias made per call has its column collection rebuilt and adapted on every
# statement (it was a sixth of a registration's CPU in the API when the hole search used one).
_CHILD = aliased(PoolNode, name="child_node")


async def pool_for_update(session: AsyncSession, level: int) -> Pool | None:
    return await session.scalar(select(Pool).where(Pool.level == level).with_for_update())


# The holes are found through two indexes whatever the planner estimates: the lowest free slot
# (`ix_slot_leases_level_status_slot` in slot order) and the lapsed leases
# (`ix_slot_leases_lapsing` in deadline order: a prefix below `now`, and few, since a lapsed
# lease is the next registration's slot). Past LAPSED_CAP lapsed leases one query that may
# scan every live lease decides. Walking live leases in slot order instead cost 77 ms inside
# the lease lock at 200,000.
LAPSED_CAP = 1_000
_LEASE_LEVEL1 = text(
    "SELECT outcome, slot, lapsed_transaction, first_fresh FROM autopool_lease_level1("
    ":now, :user_id, :referrer_id, :transaction_id, :deadline, :lapsed_cap)"
)


async def lease_level1(
    session: AsyncSession,
    *,
    now: int,
    user_id: int,
    referrer_id: int,
    transaction_id: int | None,
    deadline: int,
    lapsed_cap: int = LAPSED_CAP,
) -> tuple[str, int | None, int | None, int | None]:
    """The lease rule, run by PostgreSQL (`autopool_lease_level1`, migration 0012): outcome
    ('leased', 'no-pool', 'waiting'), slot, lapsed payload, high-water mark. The caller holds
    the lease lock. Rows of `pools` and `slot_leases` this session holds are expired: the
    function changed them behind the ORM's back."""
    await session.flush()
    row = (
        await session.execute(
            _LEASE_LEVEL1,
            {
                "now": now,
                "user_id": user_id,
                "referrer_id": referrer_id,
                "transaction_id": transaction_id,
                "deadline": deadline,
                "lapsed_cap": lapsed_cap,
            },
        )
    ).one()
    _expire_leases(session)
    return row.outcome, row.slot, row.lapsed_transaction, row.first_fresh


def _expire_leases(session: AsyncSession) -> None:
    """Forget what this session holds of `pools` and `slot_leases` (changed by SQL functions)."""
    for held in list(session.identity_map.values()):
        if isinstance(held, Pool | SlotLease):
            session.expire(held)


async def lease_of_slot(session: AsyncSession, level: int, slot: int) -> SlotLease | None:
    return await session.scalar(
        select(SlotLease).where(SlotLease.level == level, SlotLease.slot == slot).with_for_update()
    )


async def live_lease_of_user(session: AsyncSession, user_id: int) -> SlotLease | None:
    return await session.scalar(
        select(SlotLease)
        .where(SlotLease.user_id == user_id, SlotLease.status == LeaseStatus.LEASED)
        .with_for_update()
    )


def add_lease(
    session: AsyncSession,
    level: int,
    slot: int,
    status: LeaseStatus,
    *,
    user_id: int | None = None,
    referrer_id: int | None = None,
    transaction_id: int | None = None,
    deadline: int = 0,
) -> None:
    session.add(
        SlotLease(
            level=level,
            slot=slot,
            user_id=user_id,
            referrer_id=referrer_id,
            transaction_id=transaction_id,
            deadline=deadline,
            status=status,
        )
    )


def add_free_slots(session: AsyncSession, level: int, slots: Iterable[int]) -> None:
    for slot in slots:
        add_lease(session, level, slot, LeaseStatus.FREE)


async def nodes_at(session: AsyncSession, level: int, slots: Iterable[int]) -> dict[int, PoolNode]:
    """The nodes at `slots` of `level`, locked for update (callers hold the level lock)."""
    wanted = list(slots)
    if not wanted:
        return {}
    rows = await session.scalars(
        select(PoolNode).where(PoolNode.level == level, PoolNode.slot.in_(wanted)).with_for_update()
    )
    return {n.slot: n for n in rows}


async def count_node(session: AsyncSession, level: int) -> None:
    await session.execute(
        update(Pool).where(Pool.level == level).values(node_count=Pool.node_count + 1)
    )


async def placement_of_payload(session: AsyncSession, transaction_id: int) -> Placement | None:
    """The placement a registration payload leased, locked."""
    return await session.scalar(
        select(Placement).where(Placement.transaction_id == transaction_id).with_for_update()
    )


async def expire_placement_of_payload(session: AsyncSession, transaction_id: int) -> None:
    await session.execute(
        update(Placement)
        .where(
            Placement.transaction_id == transaction_id,
            Placement.status == PlacementStatus.PENDING,
        )
        .values(status=PlacementStatus.EXPIRED)
    )


async def ensure_level(session: AsyncSession, level: int, price: int, root_owner: int) -> None:
    """The level's pool and its root node (slot 0), created once."""
    await session.execute(
        insert(Pool)
        .values(level=level, price=price, next_slot=1, node_count=1)
        .on_conflict_do_nothing()
    )
    await session.execute(
        insert(PoolNode)
        .values(level=level, slot=0, user_id=root_owner, filled=0, reserved=0, completed=False)
        .on_conflict_do_nothing()
    )


async def nodes_of_user(session: AsyncSession, user_id: int) -> list[PoolNode]:
    return list(
        await session.scalars(
            select(PoolNode).where(PoolNode.user_id == user_id).order_by(PoolNode.level)
        )
    )


async def node_at(session: AsyncSession, level: int, slot: int) -> PoolNode | None:
    return await session.scalar(
        select(PoolNode).where(PoolNode.level == level, PoolNode.slot == slot)
    )


async def nodes_in(
    session: AsyncSession, level: int, slots: Iterable[int]
) -> list[tuple[int, str, int, bool]]:
    """(slot, owner wallet, filled, completed) of the confirmed nodes among `slots`."""
    wanted = list(slots)
    if not wanted:
        return []
    rows = await session.execute(
        select(PoolNode.slot, User.wallet, PoolNode.filled, PoolNode.completed)
        .join(User, User.id == PoolNode.user_id)
        .where(PoolNode.level == level, PoolNode.slot.in_(wanted))
        .order_by(PoolNode.slot)
    )
    return [(int(s), str(w), int(f), bool(c)) for s, w, f, c in rows.all()]


async def nodes_page(
    session: AsyncSession, level: int, after_slot: int | None, limit: int
) -> list[tuple[int, str, int, bool]]:
    query = (
        select(PoolNode.slot, User.wallet, PoolNode.filled, PoolNode.completed)
        .join(User, User.id == PoolNode.user_id)
        .where(PoolNode.level == level)
        .order_by(PoolNode.slot)
        .limit(limit)
    )
    if after_slot is not None:
        query = query.where(PoolNode.slot > after_slot)
    return [
        (int(s), str(w), int(f), bool(c)) for s, w, f, c in (await session.execute(query)).all()
    ]


async def pools(session: AsyncSession) -> list[Pool]:
    return list(await session.scalars(select(Pool).order_by(Pool.level)))


async def completed_counts(session: AsyncSession) -> dict[int, int]:
    rows = await session.execute(
        select(PoolNode.level, func.count()).where(PoolNode.completed).group_by(PoolNode.level)
    )
    return {int(level): int(n) for level, n in rows.all()}


async def progression_counts(session: AsyncSession) -> dict[int, int]:
    rows = await session.execute(
        select(Placement.level, func.count())
        .where(Placement.source == PlacementSource.PROGRESSION)
        .group_by(Placement.level)
    )
    return {int(level): int(n) for level, n in rows.all()}


async def lowest_open_slot(session: AsyncSession, level: int) -> int | None:
    """The lowest slot below the high-water mark that holds no confirmed node (level 1:
    leased or free), or None when every slot below the mark is confirmed."""
    if level != 1:
        return None
    return await session.scalar(
        select(func.min(SlotLease.slot)).where(
            SlotLease.level == 1, SlotLease.status != LeaseStatus.CONFIRMED
        )
    )


async def queue(
    session: AsyncSession, level: int, from_slot: int, limit: int
) -> list[tuple[int, str, int]]:
    """Nodes from `from_slot` on with at least one free child slot, breadth-first:
    (slot, owner wallet, free children)."""
    child = _CHILD
    children = (
        select(func.count())
        .select_from(child)
        .where(child.level == level, child.slot.in_([2 * PoolNode.slot + 1, 2 * PoolNode.slot + 2]))
        .scalar_subquery()
    )
    rows = await session.execute(
        select(PoolNode.slot, User.wallet, 2 - children)
        .join(User, User.id == PoolNode.user_id)
        .where(PoolNode.level == level, PoolNode.slot >= from_slot, children < 2)
        .order_by(PoolNode.slot)
        .limit(limit)
    )
    return [(int(s), str(w), int(free)) for s, w, free in rows.all()]
