"""Queries for what the listener has confirmed so far."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.models import Anomaly, BlockchainSync, ChainEvent, ReconciliationReport


async def confirmed_block(session: AsyncSession) -> tuple[int, int]:
    """(number, timestamp) of the newest block the listener has confirmed; (-1, 0) before any."""
    row = (
        await session.execute(
            select(
                func.coalesce(func.max(BlockchainSync.last_block), -1),
                func.coalesce(func.max(BlockchainSync.last_block_timestamp), 0),
            )
        )
    ).one()
    return int(row[0]), int(row[1])


async def cursors(session: AsyncSession) -> list[BlockchainSync]:
    return list(await session.scalars(select(BlockchainSync).with_for_update()))


async def listener_halt(session: AsyncSession) -> str | None:
    """Why the listener stopped writing the ledger (a deep reorg), or None while it runs."""
    return await session.scalar(
        select(BlockchainSync.halted_reason)
        .where(BlockchainSync.halted_reason.is_not(None))
        .limit(1)
    )


async def unacknowledged_anomalies(session: AsyncSession) -> int:
    count = await session.scalar(
        select(func.count()).select_from(Anomaly).where(Anomaly.acknowledged_at.is_(None))
    )
    return int(count or 0)


async def events_page(
    session: AsyncSession,
    *,
    before_id: int | None,
    limit: int,
    name: str | None,
    from_block: int | None,
    to_block: int | None,
) -> list[ChainEvent]:
    query = select(ChainEvent).order_by(ChainEvent.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(ChainEvent.id < before_id)
    if name:
        query = query.where(ChainEvent.name == name)
    if from_block is not None:
        query = query.where(ChainEvent.block_number >= from_block)
    if to_block is not None:
        query = query.where(ChainEvent.block_number <= to_block)
    return list(await session.scalars(query))


async def anomaly_for_update(session: AsyncSession, anomaly_id: int) -> Anomaly | None:
    return await session.get(Anomaly, anomaly_id, with_for_update=True)


async def open_anomalies(session: AsyncSession) -> list[Anomaly]:
    return list(
        await session.scalars(
            select(Anomaly).where(Anomaly.acknowledged_at.is_(None)).order_by(Anomaly.id)
        )
    )


async def reconciliation_reports(session: AsyncSession, limit: int) -> list[ReconciliationReport]:
    """The newest reconciliation reports (settlement worker's job), newest first."""
    return list(
        await session.scalars(
            select(ReconciliationReport).order_by(ReconciliationReport.id.desc()).limit(limit)
        )
    )


async def anomaly_flows(session: AsyncSession) -> tuple[int, int]:
    """(Σ inflow, Σ outflow) of every anomaly: BNB the contract moved outside the ledger."""
    row = (
        await session.execute(
            select(
                func.coalesce(func.sum(Anomaly.inflow), 0),
                func.coalesce(func.sum(Anomaly.outflow), 0),
            )
        )
    ).one()
    return int(row[0]), int(row[1])
