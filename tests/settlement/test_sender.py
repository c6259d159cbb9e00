"""The sender on a real chain: attempts are stored before they are sent, a restart re-sends
the same bytes, a stuck transaction is replaced on the same nonce at ≥ 12.5% more, and a nonce
used by another program halts the account instead of being skipped."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from eth_account.signers.local import LocalAccount
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web3 import Web3

from backend.core.db import unit_of_work
from backend.core.settings import Settings
from backend.core.wiring import Resources, open_resources
from backend.models import SenderAccount
from backend.payouts import sender as sender_mod
from backend.payouts import service
from listener.sync import ChainSync
from tests.fixtures.flows import sponsor_chain
from tests.fixtures.services import Deployment
from tests.fixtures.wallets import mine
from tests.settlement.helpers import (
    attempts,
    automine_off,
    batches,
    mine_cheap_block,
    mine_expensive_blocks,
    paid_on_chain_per_recipient,
    rewards_by_status,
    settled_per_recipient,
)


async def signed_batch(res: Resources) -> int:
    built = await service.build_batches(res, created_by="test", limit=1)
    assert len(built) == 1
    await service.sign_built(res)
    return built[0]


async def settle_to_the_end(res: Resources, w3: Web3, chain_sync: ChainSync) -> None:
    for _ in range(5):
        await service.send_signed(res)
        mine(w3, chain_sync.confirmations)
        await chain_sync.sync_once()


async def test_an_attempt_is_stored_before_broadcast_and_a_restart_resends_the_same_bytes(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    settings: Settings,
    deployment: Deployment,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await sponsor_chain(api, w3, chain_sync, company.address, 2)
    async with open_resources(settings) as res:
        batch_id = await signed_batch(res)

        async def crash(*_args: Any, **_kw: Any) -> None:
            raise KeyboardInterrupt  # the process dies between storing and sending

        monkeypatch.setattr(sender_mod, "broadcast", crash)
        with pytest.raises(KeyboardInterrupt):
            await service.send_signed(res)
        monkeypatch.undo()
        (stored,) = await attempts(sessions)
        assert (stored.batch_id, stored.status, stored.broadcasts) == (batch_id, "prepared", 0)
        assert w3.eth.get_transaction_count(stored.sender, "pending") == stored.account_nonce

        await settle_to_the_end(res, w3, chain_sync)
    (again,) = await attempts(sessions)
    assert again.tx_hash == stored.tx_hash and again.raw_tx == stored.raw_tx
    assert again.status == "mined"
    assert w3.eth.get_transaction(stored.tx_hash)["nonce"] == stored.account_nonce  # type: ignore[arg-type]
    assert [b.status for b in await batches(sessions)] == ["executed"]
    assert paid_on_chain_per_recipient(deployment.contract) == await settled_per_recipient(sessions)


async def test_our_attempt_mined_behind_our_back_is_an_outcome_not_a_failure(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    settings: Settings,
    deployment: Deployment,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The crash came after the broadcast and before the database heard of it: the node now
    says `nonce too low` (or `already known`) to the re-send; the receipt is ours."""
    await sponsor_chain(api, w3, chain_sync, company.address, 2)
    async with open_resources(settings) as res:
        await signed_batch(res)
        real = sender_mod.broadcast

        async def send_then_crash(res_: Resources, attempt_id: int) -> None:
            async with res_.sessions() as s:
                raw = (await attempts(res_.sessions))[0].raw_tx
            del s
            w3.eth.send_raw_transaction(raw)
            raise KeyboardInterrupt

        monkeypatch.setattr(sender_mod, "broadcast", send_then_crash)
        with pytest.raises(KeyboardInterrupt):
            await service.send_signed(res)
        monkeypatch.setattr(sender_mod, "broadcast", real)
        mine(w3, 1)
        report = await service.send_signed(res)
        assert report.halted is None and report.foreign_nonces == []
        await settle_to_the_end(res, w3, chain_sync)
    assert [a.status for a in await attempts(sessions)] == ["mined"]
    assert [b.status for b in await batches(sessions)] == ["executed"]
    assert paid_on_chain_per_recipient(deployment.contract) == await settled_per_recipient(sessions)


async def test_a_mined_transaction_dropped_by_a_shallow_reorg_is_sent_again_on_its_nonce(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    settings: Settings,
    deployment: Deployment,
) -> None:
    """Found by `python -m devtools.faults`: the sender closed the nonce at the first receipt;
    a reorg inside the non-final window dropped that block, and every later batch waited
    behind the nonce gap forever. The same bytes are now sent again on the same nonce."""
    await sponsor_chain(api, w3, chain_sync, company.address, 2)
    async with open_resources(settings) as res:
        await signed_batch(res)
        snapshot = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
        await service.send_signed(res)
        mine(w3, 1)
        await service.send_signed(res)
        (mined,) = await attempts(sessions)
        assert mined.status == "mined"
        w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]
        assert w3.eth.get_transaction_count(mined.sender) == mined.account_nonce
        mine(w3, 1)  # a different block at that height, without our transaction

        report = await service.send_signed(res)
        assert report.dropped == [mined.batch_id] and report.halted is None
        await settle_to_the_end(res, w3, chain_sync)
    (again,) = await attempts(sessions)
    assert (again.tx_hash, again.status) == (mined.tx_hash, "mined")
    assert w3.eth.get_transaction_count(mined.sender) == mined.account_nonce + 1
    assert [b.status for b in await batches(sessions)] == ["executed"]
    assert paid_on_chain_per_recipient(deployment.contract) == await settled_per_recipient(sessions)


async def test_a_stuck_transaction_is_replaced_on_the_same_nonce_never_doubled_on_another(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    settings: Settings,
    deployment: Deployment,
) -> None:
    await sponsor_chain(api, w3, chain_sync, company.address, 2)
    settings = settings.model_copy(
        update={"settlement_bump_after_blocks": 2, "settlement_max_gas_price_wei": 10**15}
    )
    async with open_resources(settings) as res:
        batch_id = await signed_batch(res)
        with automine_off(w3):
            await service.send_signed(res)
            (first,) = await attempts(sessions)
            assert first.status == "sent"
            mine_expensive_blocks(w3, 1)  # the chain moves on; our price is below its base fee
            # Re-prepared while the first is still pending (an operator's retry, a second
            # worker, a restart): nothing new is signed before the bump is due.
            await service.send_signed(res)
            await service.send_signed(res)
            assert [a.tx_hash for a in await attempts(sessions)] == [first.tx_hash]
            mine_expensive_blocks(w3, 2)
            report = await service.send_signed(res)
            assert report.bumped == [batch_id]
            _, second = await attempts(sessions)
            assert second.account_nonce == first.account_nonce
            assert second.gas_price >= -(-first.gas_price * 1125 // 1000)
            assert second.raw_tx != first.raw_tx and second.status == "sent"
            mine_cheap_block(w3)
        await settle_to_the_end(res, w3, chain_sync)
    statuses = {a.tx_hash: a.status for a in await attempts(sessions)}
    assert sorted(statuses.values()) == ["mined", "replaced"]
    assert len({a.account_nonce for a in await attempts(sessions)}) == 1
    assert [b.status for b in await batches(sessions)] == ["executed"]
    assert paid_on_chain_per_recipient(deployment.contract) == await settled_per_recipient(sessions)
    assert (await rewards_by_status(sessions)).get("batched", 0) == 0


async def test_a_nonce_used_by_another_program_halts_the_sender_and_is_reported(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    settings: Settings,
    deployment: Deployment,
) -> None:
    await sponsor_chain(api, w3, chain_sync, company.address, 2)
    async with open_resources(settings) as res:
        await service.send_signed(res)  # the account's row, reconciled with the chain
        sender = w3.eth.account.from_key(deployment.sender_key)
        tx = {
            "to": sender.address,
            "value": 0,
            "gas": 21_000,
            "gasPrice": w3.eth.gas_price,
            "nonce": w3.eth.get_transaction_count(sender.address),
            "chainId": w3.eth.chain_id,
        }
        w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
        await signed_batch(res)
        report = await service.send_signed(res)
    assert report.halted is not None and report.halted.startswith("foreign-nonce")
    assert report.foreign_nonces == [tx["nonce"]]
    assert report.submitted == [] and await attempts(sessions) == []
    async with sessions() as s:
        row = await s.scalar(select(SenderAccount))
    assert row is not None and row.next_nonce == tx["nonce"] + 1


async def test_two_senders_never_run_for_the_same_account_at_once(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with open_resources(settings) as res:
        address = sender_mod.sender_account(settings).address
        async with sender_mod.sender_lock(res.engine, address) as first:
            assert first
            report = await service.send_signed(res)
            assert report.busy
        async with unit_of_work(res.sessions):
            pass
        assert not (await service.send_signed(res)).busy
