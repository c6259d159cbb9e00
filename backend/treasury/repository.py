"""Queries for the treasury: confirmed inflows and outflows as the chain's events record them."""

from __future__ import annotations

from sqlalchemy import BigInteger, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.models import (
    ChainEvent,
    ReconciliationReport,
    Reward,
    RewardStatus,
    SurplusCredit,
    TreasuryTransfer,
    User,
)
from backend.models.base import Wei

INFLOW_EVENTS = ("RegistrationAccepted", "RetopupCompleted")
# `claimTo` emits `Claimed` too (its `ClaimedTo` only names the receiver): not counted twice.
OUTFLOW_EVENTS = ("PayoutExecuted", "Claimed")


async def event_sum(session: AsyncSession, names: tuple[str, ...]) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(ChainEvent.args["amount"].astext.cast(Wei)), 0)).where(
            ChainEvent.name.in_(names)
        )
    )
    return int(total or 0)


PAYOUT_EVENTS = ("PayoutExecuted", "PayoutDeferred")


async def paid_on_chain_by_recipient(session: AsyncSession) -> dict[str, int]:
    """Wei sent to (or deferred for) each recipient by executed batches, per confirmed events."""
    recipient = ChainEvent.args["recipient"].astext
    rows = await session.execute(
        select(recipient, func.sum(ChainEvent.args["amount"].astext.cast(Wei)))
        .where(ChainEvent.name.in_(PAYOUT_EVENTS))
        .group_by(recipient)
    )
    return {str(r).lower(): int(a) for r, a in rows.all()}


async def settled_by_recipient(session: AsyncSession) -> dict[str, int]:
    """Wei of rewards the ledger counts as paid out (paid or claimable) per wallet."""
    rows = await session.execute(
        select(User.wallet, func.sum(Reward.amount))
        .join(User, User.id == Reward.user_id)
        .where(Reward.status.in_((RewardStatus.PAID, RewardStatus.CLAIMABLE)))
        .group_by(User.wallet)
    )
    return {str(w).lower(): int(a) for w, a in rows.all()}


def add_report(session: AsyncSession, report: ReconciliationReport) -> None:
    session.add(report)


async def surplus_outstanding(session: AsyncSession, block: int) -> int:
    """Surplus credited to the company that the contract has not drawn yet: Σ credits −
    Σ `SurplusDrawn` up to `block`. The contract's `surplus()` still counts it."""
    credited = await session.scalar(select(func.coalesce(func.sum(SurplusCredit.amount), 0)))
    drawn = await session.scalar(
        select(func.coalesce(func.sum(ChainEvent.args["amount"].astext.cast(Wei)), 0)).where(
            ChainEvent.name == "SurplusDrawn", ChainEvent.block_number <= block
        )
    )
    # Never below zero: a draw beyond the credits (a batch the ledger did not build, recorded
    # as an anomaly) took BNB that is gone, not a surplus to credit again.
    return max(int(credited or 0) - int(drawn or 0), 0)


async def last_report_block(session: AsyncSession) -> int | None:
    return await session.scalar(select(func.max(ReconciliationReport.block_number)))


async def batches_executed_between(session: AsyncSession, after: int, upto: int) -> list[int]:
    """Ids of the batches the chain executed in blocks (after, upto]."""
    rows = await session.scalars(
        select(ChainEvent.args["batchId"].astext.cast(BigInteger))
        .where(
            ChainEvent.name == "BatchExecuted",
            ChainEvent.block_number > after,
            ChainEvent.block_number <= upto,
        )
        .order_by(ChainEvent.block_number)
    )
    return [int(b) for b in rows]


def add_surplus_credit(session: AsyncSession, credit: SurplusCredit) -> None:
    session.add(credit)


async def user_id_of(session: AsyncSession, wallet: str) -> int | None:
    value = await session.scalar(select(User.id).where(func.lower(User.wallet) == wallet.lower()))
    return None if value is None else int(value)


async def transfer_for_update(session: AsyncSession, transfer_id: int) -> TreasuryTransfer | None:
    return await session.get(
        TreasuryTransfer, transfer_id, with_for_update=True, populate_existing=True
    )


def add_transfer(session: AsyncSession, transfer: TreasuryTransfer) -> None:
    session.add(transfer)
