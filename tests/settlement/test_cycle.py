"""The settlement cycle (DESIGN §3): batches sized by gas before signing; a batch whose
deadline a confirmed block passed is released and rebuilt under a new batch id, and its stuck
nonce is still filled, so the account's sequence has no gap."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from eth_account.signers.local import LocalAccount
from pydantic import SecretStr
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web3 import Web3

from backend.core.db import unit_of_work
from backend.core.settings import Settings
from backend.core.wiring import Resources, open_resources
from backend.models import PayoutBatch
from backend.payouts import service
from devtools.anvil import AnvilNode
from devtools.processes import SignerProcess
from listener.sync import ChainSync
from tests.fixtures.flows import sponsor_chain
from tests.fixtures.services import Deployment, start_test_signer
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


async def cycle_until_settled(res: Resources, w3: Web3, chain_sync: ChainSync) -> None:
    for _ in range(8):
        await service.run_cycle(res, created_by="test")
        mine(w3, chain_sync.confirmations)
        await chain_sync.sync_once()
        owed = await rewards_by_status(res.sessions)
        if not owed.get("pending") and not owed.get("batched"):
            await service.run_cycle(res, created_by="test")  # settle the last receipts
            return
    raise AssertionError(f"not settled: {await rewards_by_status(res.sessions)}")


async def test_a_batch_that_would_exceed_the_gas_ceiling_is_split_before_signing(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    settings: Settings,
    deployment: Deployment,
) -> None:
    await sponsor_chain(api, w3, chain_sync, company.address, 4)  # four recipients
    settings = settings.model_copy(
        update={"settlement_gas_ceiling": 500_000, "settlement_line_gas": 150_000}
    )
    async with open_resources(settings) as res:
        await cycle_until_settled(res, w3, chain_sync)
    built = await batches(sessions)
    # Two lines fit (one when the recipient is an empty account, which costs 25,000 more).
    assert len(built) >= 2 and all(1 <= b.recipient_count <= 2 for b in built)
    assert sum(b.recipient_count for b in built) == 4
    assert {b.status for b in built} == {"executed"}
    sent = await attempts(sessions)
    assert all(a.gas_limit <= 500_000 for a in sent)
    # One mined attempt per batch (a slow cycle may have bumped one: the replaced attempt has
    # no receipt of its own).
    mined = [a for a in sent if a.status == "mined"]
    assert sorted(a.batch_id for a in mined) == sorted(b.id for b in built)
    assert all(a.gas_used is not None and a.gas_used <= a.gas_limit for a in mined)
    # Each batch records the transaction and block that executed it (its BatchExecuted event).
    by_batch = {a.batch_id: a for a in mined}
    assert all(
        (b.tx_hash, b.executed_block) == (by_batch[b.id].tx_hash, by_batch[b.id].mined_block)
        for b in built
    )
    assert paid_on_chain_per_recipient(deployment.contract) == await settled_per_recipient(sessions)


async def test_an_expired_batch_is_released_and_rebuilt_and_its_stuck_nonce_still_filled(
    api: httpx.AsyncClient,
    w3: Web3,
    anvil: AnvilNode,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    settings: Settings,
    deployment: Deployment,
    database_url: str,
    tmp_path: Path,
    signer_service: SignerProcess,
) -> None:
    await sponsor_chain(api, w3, chain_sync, company.address, 2)
    owed_before = sum((await rewards_by_status(sessions)).values())
    # The signer restarted (same key, same audit log) to re-sign released rewards as soon as
    # its clock passes the old deadline, rather than after its default grace.
    signer_service.stop()
    signer = start_test_signer(
        deployment,
        anvil,
        tmp_path,
        database_url,
        extra_env={"AUTOPOOL_SIGNER_BATCH_REUSE_GRACE_SECONDS": "0"},
    )
    settings = settings.model_copy(
        update={
            "settlement_bump_after_blocks": 2,
            "settlement_max_gas_price_wei": 10**15,
            "signer_url": signer.url,
            "signer_token": SecretStr(signer.token),
        }
    )
    try:
        async with open_resources(settings) as res:
            (batch_id,) = await service.build_batches(res, created_by="test", limit=1)
            # Far enough for the first cycle to send it on a loaded machine, then it lapses
            # (the signer refuses to re-sign released rewards before its own clock passes it).
            # Both clocks matter: the contract's (blocks) and the signer's (wall time).
            chain_now = int(w3.eth.get_block("latest")["timestamp"])
            deadline = max(int(time.time()), chain_now) + 20
            async with unit_of_work(sessions) as s:
                await s.execute(
                    update(PayoutBatch).where(PayoutBatch.id == batch_id).values(deadline=deadline)
                )
            with automine_off(w3):
                await service.run_cycle(res, created_by="test")
                (stuck,) = await attempts(sessions)
                assert stuck.status == "sent"
                # The chain's clock jumps past the deadline, wherever earlier tests left it.
                past = deadline + 5 - int(w3.eth.get_block("latest")["timestamp"])
                w3.provider.make_request("evm_increaseTime", [max(past, 1)])  # type: ignore[arg-type]
                mine_expensive_blocks(w3, chain_sync.confirmations + 1)
                await chain_sync.sync_once()  # a confirmed block is past the deadline
                await asyncio.sleep(max(0.0, deadline + 1 - time.time()))
                # Released by the next cycle (on a loaded machine, by one of the next few):
                # then it is expired and its rewards went into a new batch.
                for _ in range(20):
                    await service.run_cycle(res, created_by="test")
                    first, *rebuilt = await batches(sessions)
                    if first.status == "expired":
                        break
                    mine_expensive_blocks(w3, 1)
                    await chain_sync.sync_once()
                    await asyncio.sleep(1)
                assert first.id == batch_id and first.status == "expired"
                assert len(rebuilt) == 1 and rebuilt[0].status in ("signed", "submitted")
                mine_cheap_block(w3)
            await cycle_until_settled(res, w3, chain_sync)
    finally:
        signer.stop()

    first, second = await batches(sessions)
    assert (first.status, second.status) == ("expired", "executed")
    nonces_of_first = {a.account_nonce for a in await attempts(sessions) if a.batch_id == first.id}
    assert nonces_of_first == {stuck.account_nonce}
    sender = w3.eth.account.from_key(deployment.sender_key).address
    # The stuck nonce was filled (by its own reverted attempt, or a replacement): no gap.
    assert w3.eth.get_transaction_count(sender, "latest") == stuck.account_nonce + 2
    assert paid_on_chain_per_recipient(deployment.contract) == await settled_per_recipient(sessions)
    assert sum((await settled_per_recipient(sessions)).values()) == owed_before
