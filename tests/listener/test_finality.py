"""The listener writes the ledger only from final blocks: nothing before the confirmation
depth, exactly once after it, and nothing at all when a reorg reaches below its cursor."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from eth_account.signers.local import LocalAccount
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web3 import Web3

from backend.models import BlockchainSync, ChainEvent, Reward, User
from backend.monitoring import service as monitoring
from devtools.wallet import send_as_wallet
from listener.sync import ChainSync, DeepReorg, Halted
from tests.fixtures.flows import register_and_confirm, request_registration
from tests.fixtures.ledger import ledger_rows
from tests.fixtures.services import new_wallet
from tests.fixtures.wallets import mine


async def status_of(sessions: async_sessionmaker[AsyncSession], wallet: str) -> str | None:
    async with sessions() as s:
        return await s.scalar(select(User.status).where(User.wallet == wallet))


async def registrations_settled(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as s:
        return int(
            await s.scalar(
                select(func.count())
                .select_from(ChainEvent)
                .where(ChainEvent.name == "RegistrationAccepted")
            )
            or 0
        )


async def test_nothing_is_settled_before_the_confirmation_depth_then_exactly_once(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
) -> None:
    assert chain_sync.confirmations == 2
    wallet = new_wallet(w3)
    body = await request_registration(api, wallet, company.address)
    included = int(send_as_wallet(w3, wallet, body["tx"])["blockNumber"])

    for depth in range(chain_sync.confirmations):
        assert int(w3.eth.block_number) == included + depth
        await chain_sync.sync_once()
        assert await status_of(sessions, wallet.address) == "pending", f"settled at depth {depth}"
        assert await registrations_settled(sessions) == 0
        mine(w3, 1)

    assert int(w3.eth.block_number) == included + chain_sync.confirmations
    assert await chain_sync.sync_once() >= 1
    assert await status_of(sessions, wallet.address) == "active"
    assert await registrations_settled(sessions) == 1
    async with sessions() as s:
        lines = await s.scalar(select(func.count()).select_from(Reward))
    assert lines

    mine(w3, 3)
    await chain_sync.sync_once()
    assert await registrations_settled(sessions) == 1
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Reward)) == lines


async def cursor_of(sessions: async_sessionmaker[AsyncSession]) -> tuple[Any, ...]:
    async with sessions() as s:
        cursor = await s.scalar(select(BlockchainSync))
        assert cursor is not None
        return cursor.last_block, cursor.last_block_hash, cursor.last_block_timestamp


@pytest.mark.chain_diverged
async def test_a_reorg_below_the_cursor_halts_with_cursor_and_ledger_untouched(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
) -> None:
    first = new_wallet(w3)
    await register_and_confirm(api, w3, chain_sync, first, company.address)
    fork_point = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    second = new_wallet(w3)
    await register_and_confirm(api, w3, chain_sync, second, first.address)
    cursor, ledger = await cursor_of(sessions), await ledger_rows(sessions)
    assert await status_of(sessions, second.address) == "active"

    # Another history replaces every block since the fork point, deeper than the
    # confirmation depth: the block under the cursor is no longer the one the ledger read.
    w3.provider.make_request("evm_revert", [fork_point])  # type: ignore[arg-type]
    other = new_wallet(w3)
    w3.eth.send_transaction({"from": w3.eth.accounts[5], "to": other.address, "value": 1})
    mine(w3, chain_sync.confirmations + 5)
    assert w3.eth.get_block(cursor[0])["hash"].to_0x_hex() != cursor[1]

    with pytest.raises(DeepReorg):
        await chain_sync.sync_once()
    with pytest.raises(Halted):  # and it stays halted: no retry writes anything either
        await chain_sync.sync_once()
    assert await cursor_of(sessions) == cursor
    after = await ledger_rows(sessions)
    # Every ledger table as it was; the cursor row only gained the halt (its block and hash are
    # asserted above).
    assert {k: v for k, v in after.items() if k != "blockchain_sync"} == {
        k: v for k, v in ledger.items() if k != "blockchain_sync"
    }
    # The halt is on the cursor, for /ready and the settlement worker to see.
    async with sessions() as s:
        reason = await monitoring.listener_halt(s)
        blocked = await monitoring.submissions_blocked(s)
    assert reason is not None and f"block {cursor[0]} changed" in reason
    assert blocked is not None and "halted" in blocked
    r = await api.get("/ready")
    assert r.status_code == 503
    assert r.json()["checks"]["listener"]["status"] == "halted"
