"""Database engine and sessions. A unit of work gets one session; the caller commits once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def make_engine(url: str, **kwargs: object) -> AsyncEngine:
    return create_async_engine(url, pool_pre_ping=True, **kwargs)  # type: ignore[arg-type]


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def unit_of_work(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One transaction: commits if the block returns, rolls back if it raises."""
    async with sessions() as session, session.begin():
        yield session


# Advisory-lock keys (pg_advisory_xact_lock); one per thing that must be serial.
LOCK_LEVEL1_LEASES = 0x4150_0001
LOCK_LISTENER_LEADER = 0x4150_0002
LOCK_PAYOUT_BUILD = 0x4150_0003


async def next_value(session: AsyncSession, sequence: str) -> int:
    """The next value of a Postgres sequence (never handed out twice, even on rollback)."""
    value = await session.scalar(text(f"SELECT nextval('{sequence}')"))
    if value is None:
        raise RuntimeError(f"sequence {sequence} returned nothing")
    return int(value)


async def advisory_xact_lock(session: AsyncSession, key: int) -> None:
    """Serialize with every other transaction taking the same key, until this one ends."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
