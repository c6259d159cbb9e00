"""Queries for reward lines and the per-status balances that summarize them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.models import Reward, RewardStatus, UserBalance
from backend.models.base import Wei


async def insert_lines(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    await session.execute(insert(Reward), rows)


async def add_to_balance(session: AsyncSession, user_id: int, deltas: dict[str, int]) -> None:
    """Add each delta to its `user_balances` column, in one UPDATE."""
    values = {
        # An explicit NUMERIC bind: asyncpg would otherwise send the delta as int64.
        col: getattr(UserBalance, col) + literal(delta, Wei)
        for col, delta in deltas.items()
    }
    await session.execute(
        update(UserBalance).where(UserBalance.user_id == user_id).values(**values)
    )


async def flip_node_reserve(
    session: AsyncSession, level: int, slot: int, to_status: str
) -> list[tuple[int, int]]:
    """Move the reserved rows earned at node (level, slot) to `to_status`: (user, amount)s."""
    result = await session.execute(
        update(Reward)
        .where(
            Reward.level == level,
            Reward.earner_slot == slot,
            Reward.status == RewardStatus.RESERVED,
        )
        .values(status=to_status)
        .returning(Reward.user_id, Reward.amount)
    )
    return [(int(u), int(a)) for u, a in result.all()]


async def flip_user(
    session: AsyncSession,
    user_id: int,
    from_status: str,
    to_status: str,
    batch_id: int | None = None,
) -> int:
    """Move a user's rewards in `from_status` (of `batch_id` when given) to `to_status`;
    returns their sum."""
    conditions = [Reward.user_id == user_id, Reward.status == from_status]
    if batch_id is not None:
        conditions.append(Reward.batch_id == batch_id)
    result = await session.execute(
        update(Reward).where(*conditions).values(status=to_status).returning(Reward.amount)
    )
    return sum(int(a) for (a,) in result.all())


async def batch_pending(
    session: AsyncSession, user_ids: Iterable[int], batch_id: int
) -> list[tuple[int, int]]:
    """Mark the pending rewards of `user_ids` batched under `batch_id`: (user, amount)s.
    Rows settled meanwhile are simply not returned."""
    result = await session.execute(
        update(Reward)
        .where(Reward.user_id.in_(list(user_ids)), Reward.status == RewardStatus.PENDING)
        .values(status=RewardStatus.BATCHED, batch_id=batch_id)
        .returning(Reward.user_id, Reward.amount)
    )
    return [(int(u), int(a)) for u, a in result.all()]


async def sums_by_status(session: AsyncSession, statuses: Iterable[str]) -> dict[str, int]:
    rows = (
        await session.execute(
            select(Reward.status, func.sum(Reward.amount))
            .where(Reward.status.in_(list(statuses)))
            .group_by(Reward.status)
        )
    ).all()
    return {str(status): int(total) for status, total in rows}


async def history(
    session: AsyncSession,
    user_id: int,
    *,
    before_id: int | None,
    limit: int,
    status: str | None,
    kind: str | None,
) -> list[Reward]:
    """A participant's reward lines, newest first; `before_id` is the cursor."""
    query = select(Reward).where(Reward.user_id == user_id).order_by(Reward.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(Reward.id < before_id)
    if status:
        query = query.where(Reward.status == status)
    if kind:
        query = query.where(Reward.kind == kind)
    return list(await session.scalars(query))


async def sums_by_kind_and_status(session: AsyncSession, user_id: int) -> dict[str, dict[str, int]]:
    rows = (
        await session.execute(
            select(Reward.kind, Reward.status, func.sum(Reward.amount))
            .where(Reward.user_id == user_id)
            .group_by(Reward.kind, Reward.status)
        )
    ).all()
    out: dict[str, dict[str, int]] = {}
    for kind, status, total in rows:
        out.setdefault(str(kind), {})[str(status)] = int(total)
    return out


async def balance_of(session: AsyncSession, user_id: int) -> UserBalance | None:
    return await session.get(UserBalance, user_id)


async def pending_page(
    session: AsyncSession,
    *,
    before_id: int | None,
    limit: int,
    user_id: int | None,
    kind: str | None,
    status: str,
    max_created_at: Any | None,
    min_amount: int | None,
) -> list[Reward]:
    """Reward lines in `status` (pending by default) with filters, newest first."""
    query = select(Reward).where(Reward.status == status).order_by(Reward.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(Reward.id < before_id)
    if user_id is not None:
        query = query.where(Reward.user_id == user_id)
    if kind:
        query = query.where(Reward.kind == kind)
    if max_created_at is not None:
        query = query.where(Reward.created_at <= max_created_at)
    if min_amount is not None:
        query = query.where(Reward.amount >= literal(min_amount, Wei))
    return list(await session.scalars(query))


async def lines_of_event(session: AsyncSession, chain_event_id: int) -> list[tuple[int, str, int]]:
    """(recipient, status, wei) sums of one chain event's reward lines."""
    rows = await session.execute(
        select(Reward.user_id, Reward.status, func.sum(Reward.amount))
        .where(Reward.chain_event_id == chain_event_id)
        .group_by(Reward.user_id, Reward.status)
        .order_by(Reward.user_id, Reward.status)  # announced in participant order
    )
    return [(int(u), str(s), int(a)) for u, s, a in rows.all()]
