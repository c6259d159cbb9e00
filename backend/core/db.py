"""Database engine, sessions and transactions.

A unit of work is one session and one transaction: it commits when the block returns and rolls
back when it raises. Services and repositories never commit; the caller that opened the unit of
work does (a request's dependency, a worker's job, the listener's range).

Work that must only happen once the data is committed (a Dramatiq message, a published event)
is queued with `after_commit(session, job)` and run after the commit; a rolled-back unit of
work runs none of it. Queued jobs are nudges, never the record: whatever they trigger can be
recovered from PostgreSQL if they are lost (a Redis restart, a crash right after the commit).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal

import asyncpg
import orjson
from sqlalchemy import event, make_url, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from backend.core.errors import DATABASE_RETRY_SECONDS, DatabaseUnavailable, connection_lost
from backend.core.logging import log

AfterCommitJob = Callable[[], Awaitable[Any] | Any]
_AFTER_COMMIT = "after_commit"


Liveness = Literal["ping", "closed"]


def make_engine(url: str, *, liveness: Liveness = "ping", **kwargs: Any) -> AsyncEngine:
    """An engine whose pool replaces a dead connection before handing it out. `liveness` is
    how a pooled connection is checked when it is taken: "ping" asks the server (SQLAlchemy's
    pre-ping; with asyncpg that is BEGIN, an empty query and ROLLBACK: three round trips),
    "closed" asks asyncpg whether the server closed it (free). A terminated backend or a
    restarted server closes the socket, and asyncpg marks the connection closed as soon as
    the event loop reads that; the API, where those round trips were most of a small
    request's database time, uses "closed"."""
    if liveness == "ping":
        return create_async_engine(url, pool_pre_ping=True, **kwargs)
    engine = create_async_engine(url, **kwargs)
    event.listen(engine.sync_engine, "checkout", _replace_if_closed)
    return engine


def _replace_if_closed(
    dbapi_connection: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
) -> None:
    """Pool checkout hook: a connection the server closed is discarded and the pool hands
    out a fresh one instead (SQLAlchemy's documented use of DisconnectionError here)."""
    driver = record.driver_connection
    if driver is not None and driver.is_closed():
        raise DisconnectionError("the server closed this pooled connection")


def make_sessionmaker(
    engine: AsyncEngine, info: dict[str, Any] | None = None
) -> async_sessionmaker[AsyncSession]:
    """Sessions of `engine`; `info` is copied into every session's `info` (the process's
    event publisher, say)."""
    return async_sessionmaker(engine, expire_on_commit=False, info=info or {})


class StatementPool:
    """asyncpg connections for the API's hottest statements, each its own transaction (no
    BEGIN, no COMMIT: a statement sees one snapshot, and commits, alone): `GET /users/me`'s
    read, and a registration's one-statement lease (`autopool_register_wallet`, whose lease
    lock is released as the statement ends). No SQLAlchemy session or pool bookkeeping, no
    reset round trip when a connection goes back. On this machine a pooled SQLAlchemy read of
    `/users/me` cost about 850 µs of CPU, this 150 µs (docs/benchmarks.md, API). Nothing run
    here may leave session state behind (a SET, a LISTEN, a session-level lock): connections
    are handed back without a reset; transaction-level locks end with the statement.
    Connections open on first use (at most `max_size`, idle ones closed after 5 minutes); a
    connection the server closed (a terminated backend, a restart) is replaced when taken.
    `jsonb` arrives decoded."""

    def __init__(self, url: str, max_size: int = 10) -> None:
        self._dsn = make_url(url).set(drivername="postgresql").render_as_string(False)
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        """The first row of `sql` (parameters `$1`, `$2`, … bound to `args`), or None. A
        database that cannot be reached or ends the session is `DatabaseUnavailable` (503,
        retry), as through the SQLAlchemy pool."""
        try:
            pool = self._pool or await self._open()
            async with pool.acquire() as conn:
                try:
                    row: asyncpg.Record | None = await conn.fetchrow(sql, *args)
                except asyncpg.InternalClientError:
                    # The server ended the session, and the connection has read its goodbye
                    # but not yet the socket's end (MagicStack/asyncpg#1069): it refuses any
                    # statement, and is closed here so the pool opens another.
                    conn.terminate()
                    raise
        except Exception as exc:
            # A server that cannot be reached (a socket that fails), or that ended the session.
            if not (isinstance(exc, OSError) or connection_lost(exc)):
                raise
            log.warning("database connection lost", detail=str(exc))
            raise DatabaseUnavailable(
                "the database connection was lost; retry", retry_after=DATABASE_RETRY_SECONDS
            ) from exc
        return row

    async def _open(self) -> asyncpg.Pool:
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=0,
                    max_size=self._max_size,
                    init=_decode_json,
                    reset=_keep_session,
                )
            return self._pool

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


async def _decode_json(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=lambda v: orjson.dumps(v).decode(),
        decoder=orjson.loads,
        format="text",
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """asyncpg's default reset (RESET ALL, UNLISTEN, advisory unlocks, …: a round trip per
    request) has nothing to undo after a one-statement transaction; an open one is still rolled
    back by the pool before this runs."""


def after_commit(session: AsyncSession, job: AfterCommitJob) -> None:
    """Run `job` once the session's current transaction has committed; never if it rolls back."""
    session.info.setdefault(_AFTER_COMMIT, []).append(job)


async def commit(session: AsyncSession) -> None:
    """Commit now, then run the jobs queued for after the commit. Only the owner of the unit of
    work calls this (a route that must make a step durable before a slow call, say)."""
    await session.commit()
    await _run_after_commit(session)


async def _run_after_commit(session: AsyncSession) -> None:
    jobs: list[AfterCommitJob] = session.info.pop(_AFTER_COMMIT, [])
    for job in jobs:
        try:
            result = job()
            if inspect.isawaitable(result):
                await result
        except Exception:  # the data is committed; a lost nudge is recovered from the database
            log.exception("after-commit job failed", job=getattr(job, "__qualname__", repr(job)))


@asynccontextmanager
async def unit_of_work(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One transaction: commits (then runs the after-commit jobs) if the block returns, rolls
    back (and drops them) if it raises."""
    async with sessions() as session:
        try:
            yield session
        except BaseException:
            session.info.pop(_AFTER_COMMIT, None)
            await session.rollback()
            raise
        await commit(session)


# Advisory-lock keys (pg_advisory_xact_lock); one per thing that must be serial.
LOCK_LEVEL1_LEASES = 0x4150_0001
LOCK_LISTENER_LEADER = 0x4150_0002
LOCK_PAYOUT_BUILD = 0x4150_0003

# Sequences (migration 0001). Values are never handed out twice, even on rollback.
EIP712_NONCE_SEQ = "eip712_nonce_seq"
PAYOUT_BATCH_ID_SEQ = "payout_batch_id_seq"


async def next_value(session: AsyncSession, sequence: str) -> int:
    """The next value of a Postgres sequence."""
    value = await session.scalar(text("SELECT nextval(CAST(:seq AS regclass))"), {"seq": sequence})
    if value is None:
        raise RuntimeError(f"sequence {sequence} returned nothing")
    return int(value)


async def advisory_xact_lock(session: AsyncSession, key: int) -> None:
    """Serialize with every other transaction taking the same key, until this one ends."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
