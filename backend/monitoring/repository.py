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


async def reconciliation_reports(session: AsyncSession, limit: int) -> list[ReconciliationReport]:
    """The newest reconciliation reports (settlement worker's job), newest first."""
    return list(
        await session.scalars(
            select(ReconciliationReport).order_by(ReconciliationReport.id.desc()).limit(limit)
        )
    )
