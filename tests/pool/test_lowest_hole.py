"""The lease lock's hole search stays cheap however many leases are live: it finds lapsed
leases through their deadline index (a prefix below the confirmed time), not by walking every
live lease in slot order, and answers what the full query answers."""

from __future__ import annotations

from eth_account import Account
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from backend.core.db import unit_of_work
from backend.core.wiring import current_plan
from backend.ledger.genesis import seed
from backend.pool import repository as repo
from tests.fixtures.ledger import grow_confirmed_tree

SIZE = 2_000  # confirmed slots 0..1999; slots 2000..3999 have confirmed parents
NOW = 1_000_000


# The slot_leases rows this transaction read, by sequential scans and through indexes.
_READ = (
    "SELECT seq_tup_read, idx_tup_fetch FROM pg_stat_xact_user_tables WHERE relname = 'slot_leases'"
)


async def lease_live(
    sessions: async_sessionmaker[AsyncSession],
    lapsed: list[int],
    *,
    seeded: bool = False,
    analyze: bool = True,
) -> None:
    """A seeded ledger with level 1 confirmed up to SIZE - 1, and live leases on slots
    SIZE..2*SIZE-1, all due after NOW but `lapsed`."""
    if not seeded:
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
        await s.execute(
            text("UPDATE pools SET next_slot = :mark WHERE level = 1"), {"mark": 2 * SIZE}
        )
        if analyze:
            await s.execute(text("ANALYZE slot_leases"))


async def hole(s: AsyncSession, now: int, lapsed_cap: int = repo.LAPSED_CAP) -> int | None:
    """The slot the lease rule gives (leased to nobody in particular: the caller rolls back)."""
    outcome, slot, _, _ = await repo.lease_level1(
        s,
        now=now,
        user_id=None,
        referrer_id=None,
        transaction_id=None,
        deadline=now + 60,
        lapsed_cap=lapsed_cap,
    )
    if outcome == "leased" and slot is not None and slot < SIZE:
        raise AssertionError(f"slot {slot} is confirmed")
    return slot if outcome == "leased" and slot is not None and slot < 2 * SIZE else None


async def test_a_lapsed_lease_among_thousands_of_live_ones_is_found_by_its_deadline(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await lease_live(sessions, [3_500, 2_700])
    async with sessions() as s:  # rolled back
        assert await hole(s, NOW) == 2_700
        read = (await s.execute(text(_READ))).one()
    # The search read a handful of slot_leases rows, not the 2,000 live leases.
    assert read.seq_tup_read + read.idx_tup_fetch < 50, read


async def test_the_search_stays_indexed_on_a_connection_that_planned_it_on_a_small_tree(
    db_engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with db_engine.connect() as conn:  # one connection throughout, as an API's is
        s = AsyncSession(bind=conn)
        async with unit_of_work(sessions) as seeding:
            await seed(seeding, Account.create().address, current_plan())
        for _ in range(8):  # past the executions after which PostgreSQL may keep a plan
            await repo.lease_level1(
                s, now=NOW, user_id=None, referrer_id=None, transaction_id=None, deadline=NOW
            )
            await s.rollback()
        # Grown without an ANALYZE (autovacuum's comes when it comes): nothing tells the
        # connection its plans are stale.
        await lease_live(sessions, [3_500, 2_700], seeded=True, analyze=False)
        assert await hole(s, NOW) == 2_700
        read = (await s.execute(text(_READ))).one()
        await s.rollback()
    assert read.seq_tup_read + read.idx_tup_fetch < 50, read


async def test_more_lapsed_leases_than_the_cap_get_the_full_querys_answer(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    lapsed = [*range(3_900, 3_990, 3), 2_950]
    await lease_live(sessions, lapsed)
    async with sessions() as s:
        assert await hole(s, NOW, lapsed_cap=10) == 2_950  # the scanning query
    async with sessions() as s:
        assert await hole(s, NOW) == 2_950  # the indexed one
    async with sessions() as s:
        assert await hole(s, 0) is None  # nothing lapsed before time 0: a fresh slot
