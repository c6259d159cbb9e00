"""The ledger-invariant check that runs after every database test: it fails a test that
leaves the ledger inconsistent, and it sees each kind of inconsistency."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from eth_account.signers.local import LocalAccount
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web3 import Web3

from backend.core.db import unit_of_work
from backend.payouts import service
from devtools.processes import REPO_ROOT
from listener.sync import ChainSync
from tests.fixtures.flows import sponsor_chain
from tests.fixtures.invariants import asyncpg_dsn, ledger_problems

INCONSISTENT_TEST = """
from eth_account import Account

from backend.core.db import unit_of_work
from backend.models import User, UserBalance


async def test_that_passes_its_own_assertions(sessions):
    async with unit_of_work(sessions) as s:
        user = User(wallet=Account.create().address, status="active")
        s.add(user)
        await s.flush()
        s.add(UserBalance(user_id=user.id, pending=5))  # 5 wei that no reward line backs
    assert True
"""


def test_a_test_that_leaves_the_ledger_inconsistent_fails(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    pytester.makeconftest(
        'pytest_plugins = ["tests.fixtures.chain", "tests.fixtures.db", '
        '"tests.fixtures.invariants"]'
    )
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = session\n"
        "asyncio_default_test_loop_scope = session\n"
    )
    pytester.makepyfile(INCONSISTENT_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*the test left the ledger inconsistent*",
            "*user_balances of user 1 drifted: pending 5 != rewards 0*",
        ]
    )


@pytest.fixture
async def ledger(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    database_url: str,
) -> AsyncIterator[asyncpg.Connection]:
    """A sound ledger (three registrations settled, one payout batch built), and a connection
    inside a transaction that is rolled back: each test corrupts it in its own way."""
    await sponsor_chain(api, w3, chain_sync, company.address, 3)
    async with unit_of_work(sessions) as s:
        await service.build_batch(s, max_recipients=1, deadline_seconds=900, created_by="test")
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    tx = conn.transaction()
    await tx.start()
    try:
        assert await ledger_problems(conn, w3) == []
        yield conn
    finally:
        await tx.rollback()
        await conn.close()


CORRUPTIONS = {
    "a balance that drifted from its rewards": (
        ["UPDATE user_balances SET pending = pending + 1 WHERE user_id = 1"],
        "user_balances of user 1 drifted: pending",
    ),
    "reward lines that do not sum to their inflow": (
        [
            "UPDATE rewards SET amount = amount + 1 WHERE id = (SELECT min(id) FROM rewards "
            "WHERE status = 'pending')",
            "UPDATE user_balances b SET pending = pending + 1 FROM rewards r WHERE r.id = "
            "(SELECT min(id) FROM rewards WHERE status = 'pending') AND b.user_id = r.user_id",
        ],
        "but its reward lines sum to",
    ),
    "a reserve consumed that funded nothing": (
        [
            "UPDATE user_balances b SET pending = pending - r.amount, "
            "reinvested = reinvested + r.amount FROM rewards r WHERE r.id = "
            "(SELECT min(id) FROM rewards WHERE status = 'pending') AND b.user_id = r.user_id",
            "UPDATE rewards SET status = 'reinvested' WHERE id = "
            "(SELECT min(id) FROM rewards WHERE status = 'pending')",
        ],
        "reserves consumed (reinvested)",
    ),
    "a payout line that its rewards do not back": (
        ["UPDATE payout_lines SET amount = amount + 1"],
        "of rewards are batched under it",
    ),
    "a payout line whose rewards are in another state": (
        ["UPDATE payout_lines SET status = 'paid'"],
        "but its rewards are ['batched']",
    ),
    "a node count that is not the tree's": (
        ["UPDATE pools SET node_count = node_count + 1 WHERE level = 1"],
        "level 1 counts",
    ),
    "a liability written off while the contract still holds it": (
        [
            "UPDATE user_balances b SET pending = pending - r.amount, paid = paid + r.amount "
            "FROM rewards r WHERE r.id = (SELECT min(id) FROM rewards WHERE status = "
            "'pending') AND b.user_id = r.user_id",
            "UPDATE rewards SET status = 'paid' WHERE id = "
            "(SELECT min(id) FROM rewards WHERE status = 'pending')",
        ],
        "but the ledger owes",
    ),
    "an outflow event that the contract's balance does not show": (
        [
            "INSERT INTO chain_events (chain_id, contract, block_number, block_hash, "
            "block_timestamp, tx_hash, log_index, name, args) SELECT chain_id, contract, "
            "last_block, '0x' || repeat('ab', 32), 0, '0x' || repeat('cd', 32), 0, 'Claimed', "
            '\'{"amount": "1"}\' FROM blockchain_sync'
        ],
        "but its events account for",
    ),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
async def test_each_kind_of_inconsistency_is_reported(
    ledger: asyncpg.Connection, w3: Web3, corruption: str
) -> None:
    statements, expected = CORRUPTIONS[corruption]
    for sql in statements:
        await ledger.execute(sql)
    problems = await ledger_problems(ledger, w3)
    assert any(expected in p for p in problems), problems
