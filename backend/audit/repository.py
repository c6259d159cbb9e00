"""Queries for the append-only audit log (a trigger refuses UPDATE and DELETE)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.models import AuditLog


async def append(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    target: str | None,
    details: dict[str, Any],
    block_number: int | None,
) -> AuditLog:
    row = AuditLog(
        actor=actor, action=action, target=target, details=details, block_number=block_number
    )
    session.add(row)
    await session.flush()
    return row


async def page(
    session: AsyncSession,
    *,
    before_id: int | None,
    limit: int,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
) -> list[AuditLog]:
    """Newest first; `before_id` is the cursor (the last id of the previous page)."""
    query = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(AuditLog.id < before_id)
    if actor:
        query = query.where(AuditLog.actor == actor)
    if action:
        query = query.where(AuditLog.action == action)
    if target:
        query = query.where(AuditLog.target == target)
    if since:
        query = query.where(AuditLog.created_at >= since)
    return list(await session.scalars(query))
