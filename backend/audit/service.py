"""The audit log: every admin and operator state change writes one row (actor, action,
target, before, after), in the same transaction as the change, so one cannot happen without
the other."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from backend.audit import repository as repo
from backend.models import AuditLog


async def record(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    target: str | None = None,
    before: Any = None,
    after: Any = None,
    block_number: int | None = None,
    **details: Any,
) -> AuditLog:
    """Append one audit row; the caller's transaction commits it with the change itself."""
    return await repo.append(
        session,
        actor=actor,
        action=action,
        target=target,
        details={"before": before, "after": after, **details},
        block_number=block_number,
    )


async def page(
    session: AsyncSession,
    *,
    cursor: int | None,
    limit: int,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
) -> list[AuditLog]:
    return await repo.page(
        session,
        before_id=cursor,
        limit=limit,
        actor=actor,
        action=action,
        target=target,
        since=since,
    )
