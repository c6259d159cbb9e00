"""Queries for level trees, nodes and level-1 slot leases. Every query is indexed and touches
O(1) rows: nothing here walks or loads a tree."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.models import BlockchainSync, Pool, PoolNode, SlotLease


async def confirmed_block_time(session: AsyncSession) -> int:
    """Timestamp of the newest block the listener has confirmed (0 before the first)."""
    value = await session.scalar(select(func.max(BlockchainSync.last_block_timestamp)))
    return int(value or 0)


async def pool_for_update(session: AsyncSession, level: int) -> Pool | None:
    return await session.scalar(select(Pool).where(Pool.level == level).with_for_update())


async def lowest_reusable_lease(session: AsyncSession, confirmed_time: int) -> SlotLease | None:
    """The lowest level-1 slot whose lease lapsed: freed already, or leased with a deadline a
    confirmed block has passed (its payload can never execute any more)."""
    return await session.scalar(
        select(SlotLease)
        .where(
            SlotLease.level == 1,
            or_(
                SlotLease.status == "free",
                (SlotLease.status == "leased") & (SlotLease.deadline < confirmed_time),
            ),
        )
        .order_by(SlotLease.slot)
        .limit(1)
        .with_for_update()
    )


async def lease_of_slot(session: AsyncSession, level: int, slot: int) -> SlotLease | None:
    return await session.scalar(
        select(SlotLease).where(SlotLease.level == level, SlotLease.slot == slot).with_for_update()
    )


async def live_lease_of_user(session: AsyncSession, user_id: int) -> SlotLease | None:
    return await session.scalar(
        select(SlotLease)
        .where(SlotLease.user_id == user_id, SlotLease.status == "leased")
        .with_for_update()
    )


async def node_exists(session: AsyncSession, level: int, slot: int) -> bool:
    found = await session.scalar(
        select(PoolNode.id).where(PoolNode.level == level, PoolNode.slot == slot)
    )
    return found is not None


async def nodes_at(session: AsyncSession, level: int, slots: Iterable[int]) -> dict[int, PoolNode]:
    """The nodes at `slots` of `level`, locked for update (callers hold the level lock)."""
    wanted = list(slots)
    if not wanted:
        return {}
    rows = await session.scalars(
        select(PoolNode).where(PoolNode.level == level, PoolNode.slot.in_(wanted)).with_for_update()
    )
    return {n.slot: n for n in rows}
