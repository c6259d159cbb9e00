"""The API's pool checks a connection without a round trip when it hands it out: one the
server closed (a terminated backend, a restart) is replaced before use, as pre-ping did."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from backend.core.db import make_engine


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
