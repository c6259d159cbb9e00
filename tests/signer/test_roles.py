"""The database roles of migration 0003 (docs/operations.md "Database roles"): the API's role
cannot forge a chain fact, so the signer's checks, which rest on chain facts, hold even when
that whole role is in an attacker's hands; the signer's role reads the ledger and never writes
it; and the API, the listener and the settlement worker still do their work under their roles.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from eth_account.signers.local import LocalAccount
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web3 import AsyncHTTPProvider, AsyncWeb3, Web3

from backend.app import create_app
from backend.core.db import make_engine, make_sessionmaker
from backend.core.settings import Settings
from backend.core.wiring import open_resources
from backend.models import Reward
from backend.payouts.service import settle_once
from listener.sync import ChainSync
from signer.policy import Refused
from signer.service import SigningService
from tests.fixtures.flows import sponsor_chain
from tests.fixtures.wallets import mine
from tests.signer.conftest import ETHER, owner_dsn
from tests.signer.ledger_rows import LedgerRows

ATTACKER = "0x000000000000000000000000000000000000dEaD"  # fixed: test ids must not vary


def as_role(database_url: str, role: str) -> str:
    """`database_url` with `role` instead of its user (trust authentication, TEST ONLY)."""
    scheme, rest = database_url.split("://", 1)
    return f"{scheme}://{role}@{rest.rsplit('@', 1)[-1]}"


@pytest.fixture
async def api_role(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection as the API's role: everything an attacker holding it can do."""
    conn = await asyncpg.connect(as_role(owner_dsn(database_url), "autopool_api"))
    try:
        yield conn
    finally:
        await conn.close()


FORBIDDEN_TO_THE_API = [
    # A chain event, or a reward from one: only the listener writes them.
    "INSERT INTO chain_events (chain_id, contract, block_number, block_hash, block_timestamp, "
    "tx_hash, log_index, name, args) VALUES (1, '0x', 1, '0x', 0, '0x', 0, 'X', '{}')",
    "INSERT INTO rewards (chain_event_id, line_no, user_id, amount, kind, status, source, "
    "plan_hash) VALUES (1, 0, $1, 1, 'DIRECT', 'pending', 'registration', '0x')",
    # A participant: users become active only from a final registration event.
    f"INSERT INTO users (wallet, status, role, is_frozen, has_retopup) "
    f"VALUES ('{ATTACKER}', 'active', 'user', false, false)",
    "UPDATE users SET status = 'active' WHERE id = $1",
    # Another participant's wallet, or a reward's owner or amount.
    f"UPDATE users SET wallet = '{ATTACKER}' WHERE id = $1",
    "UPDATE rewards SET user_id = $1",
    "UPDATE rewards SET amount = amount * 2 WHERE user_id = $1",
    "DELETE FROM rewards WHERE user_id = $1",
    # The signer's own state.
    "UPDATE signer.audit_anchors SET seq = 0",
    "DELETE FROM signer.outflows",
]


@pytest.mark.parametrize("statement", FORBIDDEN_TO_THE_API)
async def test_the_api_role_cannot_write_a_chain_fact(
    api_role: asyncpg.Connection, ledger: LedgerRows, statement: str
) -> None:
    victim = await ledger.participant()
    await ledger.rewards(victim, [ETHER], status="pending")
    args = [victim.id] if "$1" in statement else []
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await api_role.execute(statement, *args)


async def test_the_api_role_cannot_move_a_paid_or_held_reward_back_into_a_batch(
    api_role: asyncpg.Connection, ledger: LedgerRows
) -> None:
    victim = await ledger.participant()
    paid = await ledger.rewards(victim, [ETHER], status="paid")
    held = await ledger.rewards(victim, [ETHER], status="held")
    status = await api_role.execute(
        "UPDATE rewards SET status = 'batched', batch_id = NULL WHERE id = ANY($1::bigint[])",
        paid,
    )
    assert status == "UPDATE 0"  # invisible to the API's update: row-level security
    # A held reward returns to pending when its owner is unfrozen, and only that way.
    with pytest.raises(asyncpg.CheckViolationError):
        await api_role.execute("UPDATE rewards SET status = 'batched' WHERE id = $1", held[0])
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        pending = await ledger.rewards(victim, [ETHER], status="pending")
        await api_role.execute("UPDATE rewards SET status = 'paid' WHERE id = $1", pending[0])


async def test_a_compromised_api_role_cannot_get_a_payout_to_an_unknown_address(
    api_role: asyncpg.Connection, ledger: LedgerRows, service: SigningService
) -> None:
    """The attacker holds the API's bearer token and its whole database role. It forges what
    that role can write: a pending user for its address, a payout batch whose line pays its
    address, the victim's real pending rewards batched under it. The signer refuses."""
    victim = await ledger.participant()
    await ledger.rewards(victim, [5 * ETHER], status="pending")
    attacker_id = await api_role.fetchval(
        "INSERT INTO users (wallet, status, role, is_frozen, has_retopup) "
        "VALUES ($1, 'pending', 'user', false, false) RETURNING id",
        ATTACKER,
    )
    await api_role.execute(
        "INSERT INTO user_balances VALUES ($1, 0, 0, 0, 0, 0, 0, 0)", attacker_id
    )
    deadline = int(service.policy.clock()) + 600

    async def forged_batch(line_user: int) -> dict[str, object]:
        batch_id = await api_role.fetchval("SELECT nextval('payout_batch_id_seq')")
        nonce = await api_role.fetchval("SELECT nextval('eip712_nonce_seq')")
        await api_role.execute(
            "INSERT INTO payout_batches (id, status, total, recipient_count, nonce, deadline, "
            "attempts) VALUES ($1, 'built', $2, 1, $3, $4, 0)",
            batch_id,
            5 * ETHER,
            nonce,
            deadline,
        )
        moved = await api_role.fetchval(
            "WITH m AS (UPDATE rewards SET status = 'batched', batch_id = $1 "
            "WHERE user_id = $2 AND status = 'pending' RETURNING amount) "
            "SELECT coalesce(sum(amount), 0) FROM m",
            batch_id,
            victim.id,
        )
        await api_role.execute(
            "UPDATE user_balances SET pending = pending - $2, batched = batched + $2 "
            "WHERE user_id = $1",
            victim.id,
            moved,
        )
        await api_role.execute(
            "INSERT INTO payout_lines (batch_id, position, user_id, recipient, amount, status) "
            "VALUES ($1, 0, $2, $3, $4, 'batched')",
            batch_id,
            line_user,
            ATTACKER,
            5 * ETHER,
        )
        return {
            "batchId": str(batch_id),
            "payouts": [{"recipient": ATTACKER, "amount": str(5 * ETHER)}],
            "nonce": str(nonce),
            "deadline": deadline,
        }

    # The line names the victim (whose rewards are batched) but pays the attacker's address.
    with pytest.raises(Refused) as info:
        await service.sign("PayoutBatch", await forged_batch(victim.id))
    assert info.value.rule == "recipient-unknown"
    # The line names the attacker's own (pending) user: it earned nothing, and is no participant.
    with pytest.raises(Refused) as info:
        await service.sign("PayoutBatch", await forged_batch(attacker_id))
    assert info.value.rule == "recipient-unknown"
    assert service.policy.rolling_total == 0
    # The owner repairs what the attacker wrote (the ledger invariants are checked afterwards).
    await ledger.conn.execute(
        "UPDATE rewards SET status = 'pending', batch_id = NULL WHERE user_id = $1", victim.id
    )
    await ledger.conn.execute(
        "UPDATE user_balances SET pending = pending + batched, batched = 0 WHERE user_id = $1",
        victim.id,
    )
    await ledger.conn.execute("DELETE FROM payout_lines")
    await ledger.conn.execute("DELETE FROM payout_batches")


async def test_the_signer_role_reads_the_ledger_and_never_writes_it(
    database_url: str, ledger: LedgerRows, signer_state: str
) -> None:
    who = await ledger.participant()
    signer = await asyncpg.connect(as_role(owner_dsn(database_url), "autopool_signer"))
    try:
        assert await signer.fetchval("SELECT wallet FROM users WHERE id = $1", who.id) == who.wallet
        for statement in (
            "UPDATE users SET is_frozen = true",
            "INSERT INTO rewards (chain_event_id, line_no, user_id, amount, kind, status, "
            "source, plan_hash) VALUES (1, 0, 1, 1, 'DIRECT', 'pending', 'registration', '0x')",
            "UPDATE payout_batches SET status = 'built'",
            "DELETE FROM transactions",
            "DELETE FROM signer.audit_anchors",
            "DELETE FROM signer.outflows",
            "DROP TRIGGER anchor_moves_forward ON signer.audit_anchors",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await signer.execute(statement)
        await signer.execute(
            "INSERT INTO signer.audit_anchors (deployment, seq, hash) VALUES ('t', 5, $1)",
            "a" * 64,
        )
        with pytest.raises(asyncpg.CheckViolationError, match="only moves forward"):
            await signer.execute("UPDATE signer.audit_anchors SET seq = 4 WHERE deployment = 't'")
        await signer.execute("UPDATE signer.audit_anchors SET seq = 6 WHERE deployment = 't'")
    finally:
        await signer.close()


@pytest.mark.chain
async def test_api_listener_and_worker_do_their_work_under_their_own_roles(
    settings: Settings,
    seeded: int,
    w3: Web3,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
) -> None:
    """Registration through the API, confirmation by the listener, payout built, signed and
    sent by the worker, and its execution recorded by the listener: each as its own role."""
    api_settings = settings.model_copy(
        update={
            "database_url": SecretStr(
                as_role(settings.database_url.get_secret_value(), "autopool_api")
            )
        }
    )
    listener_engine = make_engine(
        as_role(settings.database_url.get_secret_value(), "autopool_listener")
    )
    sync = ChainSync(
        make_sessionmaker(listener_engine),
        AsyncWeb3(AsyncHTTPProvider(settings.rpc_url)),
        settings.chain_id,
        settings.contract_address,
        confirmations=settings.confirmations,
    )
    try:
        app = create_app(api_settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
                await sponsor_chain(api, w3, sync, company.address, 2)
        async with open_resources(api_settings) as res:
            result = await settle_once(res)
        assert result.batch_id is not None and result.total > 0
        mine(w3, settings.confirmations + 1)
        await sync.sync_once()
    finally:
        await listener_engine.dispose()
    async with sessions() as s:
        paid = await s.scalar(
            select(func.coalesce(func.sum(Reward.amount), 0)).where(Reward.status == "paid")
        )
    assert int(paid) == result.total


async def test_the_api_role_freezes_but_never_rewrites_an_active_sponsor(
    api_role: asyncpg.Connection, ledger: LedgerRows
) -> None:
    victim = await ledger.participant()
    other = await ledger.participant()
    assert (
        await api_role.execute("UPDATE users SET is_frozen = true WHERE id = $1", victim.id)
        == "UPDATE 1"
    )
    with pytest.raises(asyncpg.CheckViolationError):
        await api_role.execute(
            "UPDATE users SET referrer_id = $2 WHERE id = $1", victim.id, other.id
        )
