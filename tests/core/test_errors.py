"""Problem documents for database failures: a lost connection is a 503 with Retry-After (the
transaction rolled back; retrying is safe), any other database error stays a server fault."""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import DBAPIError

from backend.core.errors import install_problem_handlers


class TerminatedByAdministrator(Exception):
    """What asyncpg raises when `pg_terminate_backend` ends the session."""


def app_raising(error: Exception) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise error

    return app


async def test_a_lost_database_connection_is_503_with_retry_after() -> None:
    lost = DBAPIError(
        "SELECT 1",
        None,
        TerminatedByAdministrator("terminating connection"),
        connection_invalidated=True,
    )
    transport = httpx.ASGITransport(app=app_raising(lost))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/boom")
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"
    assert r.json()["type"].endswith("/database-unavailable")


async def test_a_session_ended_by_the_server_is_503_even_if_not_flagged_invalidated() -> None:
    class AdminShutdownError(Exception):
        pass

    wrapped = RuntimeError("terminating connection due to administrator command")
    wrapped.__cause__ = AdminShutdownError()
    lost = DBAPIError("SELECT 1", None, wrapped, connection_invalidated=False)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app_raising(lost))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/boom")
    assert (r.status_code, r.headers["retry-after"]) == (503, "1")


async def test_another_database_error_is_still_a_server_fault() -> None:
    other = DBAPIError("SELECT 1", None, RuntimeError("deadlock"), connection_invalidated=False)
    transport = httpx.ASGITransport(app=app_raising(other), raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        with pytest.raises(DBAPIError):
            await client.get("/boom")


@pytest.mark.parametrize(
    "error",
    [
        # SQLAlchemy's on-connect codec setup on a connection the server just ended: raised
        # unwrapped (found by `python -m devtools.faults`, pg-terminate).
        asyncpg.InterfaceError("connection is closed"),
        asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle"),
    ],
)
async def test_a_driver_error_for_a_lost_session_is_503(error: Exception) -> None:
    transport = httpx.ASGITransport(app=app_raising(error))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/boom")
    assert (r.status_code, r.headers["retry-after"]) == (503, "1")
    assert r.json()["type"].endswith("/database-unavailable")


async def test_a_driver_error_of_a_misused_connection_is_still_a_server_fault() -> None:
    misuse = asyncpg.InterfaceError("cannot perform operation: another operation is in progress")
    transport = httpx.ASGITransport(app=app_raising(misuse), raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        with pytest.raises(asyncpg.InterfaceError):
            await client.get("/boom")
