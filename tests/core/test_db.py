"""The API's pool checks a connection without a round trip when it hands it out: one the
server closed (a terminated backend, a restart) is replaced before use, as pre-ping did. The
read pool of the hottest routes does the same, opens no transaction and decodes jsonb."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from backend.core.db import StatementPool, make_engine
from backend.core.errors import DatabaseUnavailable


async def _backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text("SELECT pg_backend_pid()")) or 0)


async def _terminate(database_url: str, pid: int) -> None:
    admin = create_async_engine(database_url)
    try:
        async with admin.connect() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            for _ in range(200):  # until the server has ended it
                gone = await conn.scalar(
                    text("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = :pid"),
                    {"pid": pid},
                )
                if gone:
                    break
                await asyncio.sleep(0.01)
    finally:
        await admin.dispose()
    await asyncio.sleep(0.05)  # the pooled connection's event loop reads the server's goodbye


async def test_a_pooled_connection_the_server_closed_is_replaced_before_use(
    database_url: str,
) -> None:
    engine = make_engine(database_url, liveness="closed", pool_size=1, max_overflow=0)
    try:
        first = await _backend_pid(engine)
        await _terminate(database_url, first)
        assert await _backend_pid(engine) not in (0, first)
    finally:
        await engine.dispose()


async def test_without_the_check_the_closed_connection_would_fail_the_request(
    database_url: str,
) -> None:
    engine = create_async_engine(database_url, pool_size=1, max_overflow=0)
    try:
        await _terminate(database_url, await _backend_pid(engine))
        with pytest.raises(DBAPIError):
            await _backend_pid(engine)
    finally:
        await engine.dispose()


async def test_the_read_pool_reads_outside_a_transaction_and_decodes_jsonb(
    database_url: str,
) -> None:
    reads = StatementPool(database_url, max_size=1)
    try:
        row = await reads.fetchrow(
            "SELECT jsonb_build_object('a', $1::int, 'b', '12345678901234567890123') AS doc,"
            " pg_backend_pid() AS pid",
            7,
        )
        assert row is not None
        assert row["doc"] == {"a": 7, "b": "12345678901234567890123"}
        assert await reads.fetchrow("SELECT 1 WHERE false") is None
        admin = create_async_engine(database_url)
        try:
            async with admin.connect() as conn:
                state = await conn.scalar(
                    text("SELECT state FROM pg_stat_activity WHERE pid = :pid"), {"pid": row["pid"]}
                )
        finally:
            await admin.dispose()
        assert state == "idle"  # not "idle in transaction": nothing was begun
    finally:
        await reads.aclose()


async def test_a_read_pool_connection_the_server_closed_is_replaced(database_url: str) -> None:
    reads = StatementPool(database_url, max_size=1)
    try:
        first = await reads.fetchrow("SELECT pg_backend_pid() AS pid")
        assert first is not None
        await _terminate(database_url, first["pid"])
        again = await reads.fetchrow("SELECT pg_backend_pid() AS pid")
        assert again is not None and again["pid"] != first["pid"]
    finally:
        await reads.aclose()


async def test_a_read_pool_that_cannot_reach_the_database_is_unavailable() -> None:
    reads = StatementPool("postgresql+asyncpg://postgres@127.0.0.1:9/nowhere", max_size=1)
    try:
        with pytest.raises(DatabaseUnavailable) as refused:
            await reads.fetchrow("SELECT 1")
        assert refused.value.status == 503
    finally:
        await reads.aclose()


async def test_a_read_the_server_ends_mid_statement_is_unavailable(database_url: str) -> None:
    reads = StatementPool(database_url, max_size=1)
    try:
        first = await reads.fetchrow("SELECT pg_backend_pid() AS pid")
        assert first is not None
        sleeping = asyncio.create_task(reads.fetchrow("SELECT pg_sleep(10)"))
        await asyncio.sleep(0.2)
        await _terminate(database_url, first["pid"])
        with pytest.raises(DatabaseUnavailable):
            await asyncio.wait_for(sleeping, timeout=5)
    finally:
        await reads.aclose()


async def test_statements_while_the_server_ends_sessions_fail_only_as_unavailable(
    database_url: str,
) -> None:
    """`pg_terminate_backend` against a pool in use: a connection can read the server's
    goodbye before the socket's end, and then refuses every statement with asyncpg's
    InternalClientError (MagicStack/asyncpg#1069; found as a 500 of POST /users/register by
    `python -m devtools.faults`). Every failure is DatabaseUnavailable (503, retry), and the
    pool serves again once the server stops ending sessions."""
    statements = StatementPool(database_url, max_size=4)
    pids: set[int] = set()
    failures: Counter[str] = Counter()
    until = asyncio.get_running_loop().time() + 3
    admin = create_async_engine(database_url)

    async def use() -> None:
        while asyncio.get_running_loop().time() < until:
            try:
                row = await statements.fetchrow("SELECT pg_backend_pid() AS pid")
                assert row is not None
                pids.add(row["pid"])
            except DatabaseUnavailable:
                failures["unavailable"] += 1
            except Exception as exc:  # what else escapes is the finding
                failures[type(exc).__name__] += 1
            await asyncio.sleep(0)

    async def end_sessions() -> None:
        async with admin.connect() as conn:
            while asyncio.get_running_loop().time() < until:
                await conn.execute(
                    text("SELECT pg_terminate_backend(p) FROM unnest(CAST(:p AS int[])) p"),
                    {"p": sorted(pids)},
                )
                await asyncio.sleep(0.02)

    try:
        await asyncio.gather(end_sessions(), *(use() for _ in range(8)))
        assert failures["unavailable"] > 0  # the server did end sessions in use
        assert set(failures) == {"unavailable"}, failures
        again = await statements.fetchrow("SELECT 1 AS one")
        assert again is not None and again["one"] == 1
    finally:
        await statements.aclose()
        await admin.dispose()
