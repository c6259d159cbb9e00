"""A unit of work commits once, and what was queued for after the commit runs only then: a
rolled-back unit of work sends nothing."""

from __future__ import annotations

import pytest
from eth_account import Account
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.core.db import after_commit, unit_of_work
from backend.models import User


async def users(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(User)) or 0)


async def test_jobs_run_after_the_commit_and_see_its_data(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    seen: list[int] = []

    async def job() -> None:
        seen.append(await users(sessions))  # another connection: only committed rows are visible

    async with unit_of_work(sessions) as s:
        s.add(User(wallet=Account.create().address))
        after_commit(s, job)
        await s.flush()
        assert seen == []
    assert seen == [1]


async def test_a_rolled_back_unit_of_work_runs_no_job_and_writes_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    sent: list[str] = []
    with pytest.raises(RuntimeError):
        async with unit_of_work(sessions) as s:
            s.add(User(wallet=Account.create().address))
            after_commit(s, lambda: sent.append("message"))
            await s.flush()
            raise RuntimeError("the handler failed after queuing a message")
    assert sent == []
    assert await users(sessions) == 0


async def test_a_failing_job_does_not_undo_the_commit_or_stop_the_next(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    ran: list[str] = []

    def broken() -> None:
        raise ConnectionError("redis is down")

    async with unit_of_work(sessions) as s:
        s.add(User(wallet=Account.create().address))
        after_commit(s, broken)
        after_commit(s, lambda: ran.append("second"))
    assert ran == ["second"]
    assert await users(sessions) == 1
