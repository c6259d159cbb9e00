"""Confirming one registration touches O(1) rows whatever the tree's size: the same number of
statements and loaded rows for a tree of 15 nodes as for one of 20,000."""

from __future__ import annotations

from typing import Any

from eth_account import Account
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from backend.core.db import unit_of_work
from backend.core.wiring import current_plan
from backend.ledger.genesis import seed
from backend.ledger.registration import settle_registration
from backend.models import ChainEvent, Reward
from tests.fixtures.db import truncate_all
from tests.fixtures.ledger import grow_confirmed_tree


async def build_tree(sessions: async_sessionmaker[AsyncSession], size: int) -> str:
    """A confirmed level-1 tree of `size` nodes (company at slot 0); returns the wallet at the
    slot that will be the new node's parent."""
    async with unit_of_work(sessions) as s:
        await seed(s, Account.create().address, current_plan())
    wallets = await grow_confirmed_tree(sessions, size)
    return wallets[(size - 1) // 2 - 1] if size > 2 else ""


async def settle_cost(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], size: int
) -> tuple[int, int, list[str]]:
    """(statements, reward lines, the statements) for confirming slot `size`."""
    await truncate_all(engine)
    sponsor = await build_tree(sessions, size)
    plan = current_plan()
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    async with unit_of_work(sessions) as s:
        ev = ChainEvent(
            chain_id=31337,
            contract=Account.create().address,
            block_number=1,
            block_hash="0x" + "11" * 32,
            block_timestamp=1,
            tx_hash="0x" + "22" * 32,
            log_index=0,
            name="RegistrationAccepted",
            args={
                "user": Account.create().address,
                "referrer": sponsor,
                "slot": str(size),
                "amount": str(plan.entry_price),
                "planHash": plan.plan_hash_hex(),
                "nonce": "7",
            },
        )
        s.add(ev)
        await s.flush()
        event.listen(engine.sync_engine, "before_cursor_execute", count)
        try:
            await settle_registration(s, ev, plan)
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", count)
        lines = len((await s.scalars(select(Reward).where(Reward.chain_event_id == ev.id))).all())
    return len(statements), lines, statements


async def test_confirming_a_registration_costs_the_same_in_a_tree_of_20000(
    db_engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    small = await settle_cost(db_engine, sessions, 15)
    large = await settle_cost(db_engine, sessions, 20_000)
    assert small[:2] == large[:2]
    count, lines, statements = large
    assert lines >= 4  # direct + three layers (+ company share)
    assert count <= 30
    # No statement reads or writes the tree except by slot or primary key.
    for sql in statements:
        if "pool_nodes" in sql:
            keyed = ("pool_nodes.slot", "pool_nodes.id = ", "INSERT INTO pool_nodes")
            assert any(k in sql for k in keyed), sql
