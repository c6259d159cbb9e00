"""Seed a ledger with many confirmed participants fast, written straight to the tables: for
tests of scale and for the benchmarks (not a substitute for settling real events).

Level 1 of the pool is filled in slot order (slots 1..size-1, each sponsored by the company),
with each node's `filled` count as the tree implies; no reward lines are written, so the
ledger's invariants hold (no inflow, no rewards, zero balances).

DEV/TEST ONLY.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from eth_utils import to_checksum_address
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.models import (
    LeaseStatus,
    Pool,
    PoolNode,
    SlotLease,
    User,
    UserBalance,
    UserRole,
    UserStatus,
)
from backend.plan.config import MATRIX_SIZE

CHUNK = 10_000


def filled_below(slot: int, size: int) -> int:
    """How many of the 14 places under `slot` are taken when slots 0..size-1 are placed."""
    count, first, width = 0, slot, 1
    for _ in range(3):
        first, width = 2 * first + 1, width * 2
        count += max(0, min(first + width, size) - first)
    return min(count, MATRIX_SIZE)


def synthetic_wallet(index: int) -> str:
    """A deterministic address for seeded participant `index` (no key behind it)."""
    return to_checksum_address(hashlib.sha256(f"autopool-seed-{index}".encode()).digest()[:20])


async def _insert_chunk(
    session: AsyncSession, company: int, size: int, first_slot: int, wallets: Sequence[str]
) -> None:
    ids = list(
        await session.scalars(
            insert(User).returning(User.id, sort_by_parameter_order=True),
            [{"wallet": w, "status": UserStatus.ACTIVE, "referrer_id": company} for w in wallets],
        )
    )
    await session.execute(insert(UserBalance), [{"user_id": i} for i in ids])
    slots = list(enumerate(ids, start=first_slot))
    await session.execute(
        insert(PoolNode),
        [
            {
                "level": 1,
                "slot": slot,
                "user_id": uid,
                "filled": filled_below(slot, size),
                "reserved": 0,
                "completed": filled_below(slot, size) == MATRIX_SIZE,
            }
            for slot, uid in slots
        ],
    )
    await session.execute(
        insert(SlotLease),
        [
            {
                "level": 1,
                "slot": slot,
                "user_id": uid,
                "referrer_id": company,
                "deadline": 0,
                "status": LeaseStatus.CONFIRMED,
            }
            for slot, uid in slots
        ],
    )


async def grow_level_one(
    sessions: async_sessionmaker[AsyncSession],
    size: int,
    wallets: Sequence[str] | None = None,
) -> list[str]:
    """Fill level 1 of a seeded (company-only) ledger with confirmed participants in slots
    1..size-1; `wallets` (size-1 of them) or synthetic ones. Returns the wallets, slot order.
    Written in chunks of CHUNK participants, one transaction each."""
    chosen = list(wallets) if wallets is not None else [synthetic_wallet(i) for i in range(1, size)]
    if len(chosen) != size - 1:
        raise ValueError(f"{len(chosen)} wallets for {size - 1} participants")
    async with sessions() as s:
        company = await s.scalar(select(User.id).where(User.role == UserRole.COMPANY))
    if company is None:
        raise RuntimeError("seed the company first (autopool seed)")
    for start in range(0, len(chosen), CHUNK):
        async with sessions() as s, s.begin():
            await _insert_chunk(s, company, size, start + 1, chosen[start : start + CHUNK])
    async with sessions() as s, s.begin():
        await s.execute(
            update(PoolNode)
            .where(PoolNode.level == 1, PoolNode.slot == 0)
            .values(filled=filled_below(0, size), completed=filled_below(0, size) == MATRIX_SIZE)
        )
        await s.execute(update(Pool).where(Pool.level == 1).values(next_slot=size, node_count=size))
    return chosen
