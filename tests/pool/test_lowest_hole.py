"""The lease lock's hole search stays cheap however many leases are live: it finds lapsed
leases through their deadline index (a prefix below the confirmed time), not by walking every
live lease in slot order, and answers what the full query answers."""

from __future__ import annotations

import pytest
from eth_account import Account
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.core.db import unit_of_work
from backend.core.wiring import current_plan
from backend.ledger.genesis import seed
from backend.pool import repository as repo
from tests.fixtures.ledger import grow_confirmed_tree

SIZE = 2_000  # confirmed slots 0..1999; slots 2000..3999 have confirmed parents
NOW = 1_000_000


async def lease_live(sessions: async_sessionmaker[AsyncSession], lapsed: list[int]) -> None:
    """A seeded ledger with level 1 confirmed up to SIZE - 1, and live leases on slots
    SIZE..2*SIZE-1, all due after NOW but `lapsed`."""
    async with unit_of_work(sessions) as s:
        await seed(s, Account.create().address, current_plan())
    await grow_confirmed_tree(sessions, SIZE)
    async with unit_of_work(sessions) as s:
        await s.execute(
            text(
                "INSERT INTO slot_leases (level, slot, deadline, status) "
                "SELECT 1, g, CASE WHEN g = ANY(CAST(:lapsed AS bigint[])) "
                "THEN CAST(:now AS bigint) - 1 ELSE CAST(:now AS bigint) + g END, "
                "'leased' FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) g"
            ),
            {"lapsed": lapsed, "now": NOW, "first": SIZE, "last": 2 * SIZE - 1},
        )
        await s.execute(text("ANALYZE slot_leases"))


async def test_a_lapsed_lease_among_thousands_of_live_ones_is_found_by_its_deadline(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await lease_live(sessions, [3_500, 2_700])
    async with unit_of_work(sessions) as s:
        hole = await repo.lowest_hole(s, NOW)
        assert hole is not None and hole.slot == 2_700
        plan = "\n".join(
            row[0]
            for row in await s.execute(
                text("EXPLAIN " + str(repo._HOLES)), {"now": NOW, "cap": repo._LAPSED_CAP}
            )
        )
    assert "ix_slot_leases_lapsing" in plan, plan
    assert "Seq Scan on slot_leases" not in plan, plan


async def test_more_lapsed_leases_than_the_cap_get_the_full_querys_answer(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    lapsed = [*range(3_900, 3_990, 3), 2_950]
    await lease_live(sessions, lapsed)
    monkeypatch.setattr(repo, "_LAPSED_CAP", 10)
    async with unit_of_work(sessions) as s:
        hole = await repo.lowest_hole(s, NOW)
        full = await repo._lowest_hole_scanning(s, NOW)
    assert hole is not None and full is not None and hole.slot == full.slot == 2_950
    async with unit_of_work(sessions) as s:
        assert await repo.lowest_hole(s, 0) is None  # nothing lapsed before time 0
