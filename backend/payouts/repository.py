"""Queries for payout batches and their lines."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.models import (
    AttemptStatus,
    BatchStatus,
    PayoutBatch,
    PayoutLine,
    Reward,
    RewardStatus,
    SenderAccount,
    TxAttempt,
    User,
)


async def payable_recipients(
    session: AsyncSession, limit: int, only_users: list[int] | None = None
) -> list[int]:
    """Up to `limit` unfrozen participants with pending rewards, oldest reward first (only
    those of `only_users` when given)."""
    query = (
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
    if only_users is not None:
        query = query.where(Reward.user_id.in_(only_users))
    return list(await session.scalars(query))


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


# ----------------------------------------------------------------------- the sender's state


async def batches_in(session: AsyncSession, statuses: tuple[str, ...], limit: int) -> list[int]:
    """Ids of batches in `statuses`, oldest first."""
    return list(
        await session.scalars(
            select(PayoutBatch.id)
            .where(PayoutBatch.status.in_(statuses))
            .order_by(PayoutBatch.id)
            .limit(limit)
        )
    )


async def sendable_batches(session: AsyncSession, limit: int) -> list[int]:
    """Signed batches without a live account nonce: the ones to (re)submit, oldest first."""
    return list(
        await session.scalars(
            select(PayoutBatch.id)
            .where(PayoutBatch.status == BatchStatus.SIGNED, PayoutBatch.account_nonce.is_(None))
            .order_by(PayoutBatch.id)
            .limit(limit)
        )
    )


async def expirable_batches(session: AsyncSession, confirmed_time: int) -> list[int]:
    """Unexecuted batches whose deadline a confirmed block has passed."""
    return list(
        await session.scalars(
            select(PayoutBatch.id)
            .where(
                PayoutBatch.status.in_(
                    (BatchStatus.BUILT, BatchStatus.SIGNED, BatchStatus.SUBMITTED)
                ),
                PayoutBatch.deadline < confirmed_time,
            )
            .order_by(PayoutBatch.id)
        )
    )


async def sender_for_update(session: AsyncSession, address: str) -> SenderAccount | None:
    return await session.get(SenderAccount, address, with_for_update=True, populate_existing=True)


async def open_attempts(session: AsyncSession, sender: str) -> list[TxAttempt]:
    """Attempts whose nonce is not yet known to be used, by nonce then age."""
    return list(
        await session.scalars(
            select(TxAttempt)
            .where(TxAttempt.sender == sender, TxAttempt.status.in_(AttemptStatus.open()))
            .order_by(TxAttempt.account_nonce, TxAttempt.id)
            .with_for_update()
        )
    )


async def closed_attempts_from(session: AsyncSession, sender: str, nonce: int) -> list[TxAttempt]:
    """Attempts recorded as mined or reverted at `nonce` or above (for update)."""
    return list(
        await session.scalars(
            select(TxAttempt)
            .where(
                TxAttempt.sender == sender,
                TxAttempt.account_nonce >= nonce,
                TxAttempt.status.in_((AttemptStatus.MINED, AttemptStatus.REVERTED)),
            )
            .order_by(TxAttempt.account_nonce, TxAttempt.id)
            .with_for_update()
        )
    )


async def attempts_of_nonce(session: AsyncSession, sender: str, nonce: int) -> list[TxAttempt]:
    return list(
        await session.scalars(
            select(TxAttempt)
            .where(TxAttempt.sender == sender, TxAttempt.account_nonce == nonce)
            .order_by(TxAttempt.id)
            .with_for_update()
        )
    )


async def attempt_for_update(session: AsyncSession, attempt_id: int) -> TxAttempt | None:
    return await session.get(TxAttempt, attempt_id, with_for_update=True, populate_existing=True)


async def attempts_of_batch(session: AsyncSession, batch_id: int) -> list[TxAttempt]:
    return list(
        await session.scalars(
            select(TxAttempt).where(TxAttempt.batch_id == batch_id).order_by(TxAttempt.id)
        )
    )


async def reverted_count(session: AsyncSession, batch_id: int) -> int:
    return int(
        await session.scalar(
            select(func.count())
            .select_from(TxAttempt)
            .where(TxAttempt.batch_id == batch_id, TxAttempt.status == AttemptStatus.REVERTED)
        )
        or 0
    )
