"""Queries for payout batches and their lines."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.models import BatchStatus, PayoutBatch, PayoutLine, Reward, RewardStatus, User


async def payable_recipients(session: AsyncSession, limit: int) -> list[int]:
    """Up to `limit` unfrozen participants with pending rewards, oldest reward first."""
    return list(
        await session.scalars(
            select(Reward.user_id)
            .join(User, User.id == Reward.user_id)
            .where(
                Reward.status == RewardStatus.PENDING,
                User.is_frozen.is_(False),
                Reward.amount > 0,
            )
            .group_by(Reward.user_id)
            .order_by(func.min(Reward.id))
            .limit(limit)
        )
    )


async def wallets(session: AsyncSession, user_ids: list[int]) -> dict[int, str]:
    rows = await session.execute(select(User.id, User.wallet).where(User.id.in_(user_ids)))
    return {int(i): str(w) for i, w in rows.all()}


async def batch_for_update(session: AsyncSession, batch_id: int) -> PayoutBatch | None:
    return await session.get(PayoutBatch, batch_id, with_for_update=True)


async def lines_of(session: AsyncSession, batch_id: int) -> list[PayoutLine]:
    return list(
        await session.scalars(
            select(PayoutLine).where(PayoutLine.batch_id == batch_id).order_by(PayoutLine.position)
        )
    )


async def line_of(session: AsyncSession, batch_id: int, recipient: str) -> PayoutLine | None:
    return await session.scalar(
        select(PayoutLine)
        .where(PayoutLine.batch_id == batch_id, PayoutLine.recipient == recipient)
        .with_for_update()
    )


async def oldest_unfinished(session: AsyncSession) -> int | None:
    """The oldest batch built or signed but not yet sent."""
    return await session.scalar(
        select(PayoutBatch.id)
        .where(PayoutBatch.status.in_((BatchStatus.BUILT, BatchStatus.SIGNED)))
        .order_by(PayoutBatch.id)
        .limit(1)
    )


async def batches_page(
    session: AsyncSession, before_id: int | None, limit: int, status: str | None
) -> list[PayoutBatch]:
    query = select(PayoutBatch).order_by(PayoutBatch.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(PayoutBatch.id < before_id)
    if status:
        query = query.where(PayoutBatch.status == status)
    return list(await session.scalars(query))
