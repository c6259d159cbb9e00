"""Queries for published plan versions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backend.models import PlanVersion


async def insert_once(
    session: AsyncSession, version: int, plan_hash: str, document: dict[str, Any]
) -> None:
    await session.execute(
        insert(PlanVersion)
        .values(
            version=version,
            plan_hash=plan_hash,
            document=document,
            effective_from=datetime.now(UTC),
        )
        .on_conflict_do_nothing()
    )


async def document_of(session: AsyncSession, plan_hash: str) -> dict[str, Any] | None:
    return await session.scalar(
        select(PlanVersion.document).where(PlanVersion.plan_hash == plan_hash)
    )


async def all_versions(session: AsyncSession) -> list[PlanVersion]:
    return list(await session.scalars(select(PlanVersion).order_by(PlanVersion.version)))


async def latest_version(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.coalesce(func.max(PlanVersion.version), 0))) or 0)


async def insert_version(
    session: AsyncSession,
    version: int,
    plan_hash: str,
    document: dict[str, Any],
    effective_block: int | None,
    published_by: str,
) -> PlanVersion:
    row = PlanVersion(
        version=version,
        plan_hash=plan_hash,
        document=document,
        effective_from=datetime.now(UTC),
        effective_block=effective_block,
        published_by=published_by,
    )
    session.add(row)
    await session.flush()
    return row


async def in_force(session: AsyncSession) -> PlanVersion | None:
    """The plan new payloads carry: the SQL function `plan_in_force()` (migrations 0003,
    0007) is the one definition, shared with the signer's checks."""
    rows = await session.execute(
        select(PlanVersion).from_statement(text("SELECT * FROM plan_in_force()"))
    )
    return rows.scalars().first()
