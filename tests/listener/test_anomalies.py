"""Events the ledger did not expect are recorded as anomalies, not retried forever; a listener
that lost leadership cannot commit; a halted listener resumes only by an operator's hand."""

from __future__ import annotations

import time

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web3 import Web3

from backend.chain.typed_data import Domain, full_message
from backend.core.db import unit_of_work
from backend.models import Anomaly, BlockchainSync, ChainEvent
from backend.monitoring import service as monitoring
from listener.sync import ChainSync, LostLeadership
from tests.fixtures.flows import register_and_confirm, sponsor_chain
from tests.fixtures.services import Deployment, new_wallet
from tests.fixtures.wallets import mine


def steal(
    w3: Web3, deployment: Deployment, recipient: str, amount: int, batch_id: int = 9_000_000
) -> str:
    """What a thief holding the signer key can do: sign and execute a batch no ledger built
    (an id far from the backend's). Returns the transaction hash."""
    contract = deployment.contract
    msg = {
        "batchId": batch_id,
        "payouts": [{"recipient": recipient, "amount": amount}],
        "nonce": batch_id,
        "deadline": int(w3.eth.get_block("latest")["timestamp"]) + 3600,
    }
    doc = full_message(Domain(w3.eth.chain_id, contract.address), "PayoutBatch", msg)
    signature = Account.sign_message(
        encode_typed_data(full_message=doc), deployment.signer_key
    ).signature
    thief: LocalAccount = Account.from_key(deployment.sender_key)
    call = contract.functions.executeBatchPayouts(
        (batch_id, [(recipient, amount)], batch_id, msg["deadline"]), signature
    )
    tx = call.build_transaction(
        {"from": thief.address, "nonce": w3.eth.get_transaction_count(thief.address)}
    )
    signed = thief.sign_transaction(tx)
    sent = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(sent)
    assert receipt["status"] == 1
    return str(receipt["transactionHash"].to_0x_hex())


async def test_a_payout_no_batch_holds_is_an_anomaly_and_ingestion_goes_on(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    deployment: Deployment,
) -> None:
    await sponsor_chain(api, w3, chain_sync, company.address, 2)
    thief = new_wallet(w3, 0)
    stolen_tx = steal(w3, deployment, thief.address, 3 * 10**18)
    # A registration after the theft, in later blocks of the same sync: it must still settle.
    late = new_wallet(w3)
    await register_and_confirm(api, w3, chain_sync, late, company.address)

    async with sessions() as s:
        anomalies = list(await s.scalars(select(Anomaly).order_by(Anomaly.id)))
        event = await s.scalar(select(ChainEvent).where(ChainEvent.tx_hash == stolen_tx))
        blocked = await monitoring.submissions_blocked(s)
    # Both events of the stolen batch are unexpected; only the payout moved BNB out.
    assert [(a.kind, a.outflow, a.inflow) for a in anomalies] == [
        ("unexpected-PayoutExecuted", 3 * 10**18, 0),
        ("unexpected-BatchExecuted", 0, 0),
    ]
    assert anomalies[0].log["txHash"] == stolen_tx
    assert anomalies[0].log["args"]["recipient"] == thief.address
    assert event is not None and event.processed_at is not None and event.error
    assert blocked is not None and "2 unacknowledged anomalies" in blocked
    me = await api.get("/ready")
    assert me.json()["checks"]["database"]["payoutsBlocked"] == blocked
    # The treasury counts what the anomaly moved: the books still balance to the wei.
    summary = (await api.get("/treasury/summary")).json()
    assert summary["ledger_difference"] == 0 and summary["balanced"]
    # Syncing again changes nothing: no retry loop, no second anomaly.
    mine(w3, chain_sync.confirmations)
    await chain_sync.sync_once()
    async with sessions() as s:
        assert len(list(await s.scalars(select(Anomaly)))) == 2
    # (The ledger invariants fixture checks, after this test, that the contract's balance
    # equals the ledger's liabilities minus the anomaly's outflow, to the wei.)


async def test_a_listener_fenced_out_by_a_newer_generation_writes_nothing(
    w3: Web3, chain_sync: ChainSync, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await chain_sync.sync_once()
    old = ChainSync(
        chain_sync.sessions,
        chain_sync.w3,
        chain_sync.chain_id,
        chain_sync.contract,
        confirmations=chain_sync.confirmations,
        generation=0,
    )
    # A new leader takes the cursor (generation 1); the old one does not know yet.
    async with unit_of_work(sessions) as s:
        cursor = await s.scalar(select(BlockchainSync).with_for_update())
        assert cursor is not None and cursor.leader_generation == 0
        cursor.leader_generation = 1
        before = cursor.last_block
    acct = new_wallet(w3)
    w3.eth.send_transaction({"from": w3.eth.accounts[5], "to": acct.address, "value": 1})
    mine(w3, chain_sync.confirmations + 1)
    with pytest.raises(LostLeadership):
        await old.sync_once()
    async with sessions() as s:
        cursor = await s.scalar(select(BlockchainSync))
        assert cursor is not None and cursor.last_block == before
    chain_sync.generation = 1
    await chain_sync.sync_once()
    async with sessions() as s:
        cursor = await s.scalar(select(BlockchainSync))
        assert cursor is not None and cursor.last_block > before


async def test_resume_clears_the_halt_and_moves_the_cursor_to_the_canonical_chain(
    w3: Web3, chain_sync: ChainSync, sessions: async_sessionmaker[AsyncSession]
) -> None:
    mine(w3, chain_sync.confirmations + 2)
    await chain_sync.sync_once()
    await chain_sync.halt("test: an operator is investigating")
    async with sessions() as s:
        assert await monitoring.listener_halt(s) == "test: an operator is investigating"

    async def canonical(number: int) -> str:
        return str(w3.eth.get_block(number)["hash"].to_0x_hex())

    async with unit_of_work(sessions) as s:
        done = await monitoring.resume_listener(s, canonical, from_block=2)
    assert len(done) == 1 and "resumed after block 1" in done[0]
    async with sessions() as s:
        cursor = await s.scalar(select(BlockchainSync))
        assert await monitoring.listener_halt(s) is None
    assert cursor is not None and cursor.last_block == 1
    assert cursor.last_block_hash == await canonical(1)
    started = time.monotonic()
    await chain_sync.sync_once()  # ingests again from block 2: nothing applied twice
    assert time.monotonic() - started < 30


REJECT_ALL = "0x60006000fd"  # PUSH1 0 PUSH1 0 REVERT: code that refuses every transfer


def claim(w3: Web3, acct: LocalAccount, deployment: Deployment) -> None:
    w3.provider.make_request("anvil_setCode", [acct.address, "0x"])  # type: ignore[arg-type]
    gas_money = hex(w3.eth.get_balance(acct.address) + 10**17)
    w3.provider.make_request("anvil_setBalance", [acct.address, gas_money])  # type: ignore[arg-type]
    fn = deployment.contract.functions.claim()
    tx = fn.build_transaction(
        {"from": acct.address, "nonce": w3.eth.get_transaction_count(acct.address)}
    )
    sent = w3.eth.send_raw_transaction(acct.sign_transaction(tx).raw_transaction)
    assert w3.eth.wait_for_transaction_receipt(sent)["status"] == 1


async def test_a_claim_the_ledger_did_not_expect_is_an_anomaly_with_its_reason(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    deployment: Deployment,
) -> None:
    """Deferred payouts of stolen batches, then claimed: by a participant whose ledger holds
    nothing claimable, and by an account the ledger does not know. Each `Claimed` is recorded
    with the reason the ledger refused it and the BNB it took."""
    (participant,) = await sponsor_chain(api, w3, chain_sync, company.address, 1)
    stranger = new_wallet(w3, 0)
    for n, acct in enumerate((participant, stranger)):
        w3.provider.make_request("anvil_setCode", [acct.address, REJECT_ALL])  # type: ignore[arg-type]
        steal(w3, deployment, acct.address, (n + 1) * 10**18, batch_id=9_000_000 + n)
        assert deployment.contract.functions.claimable(acct.address).call() == (n + 1) * 10**18
        claim(w3, acct, deployment)
    mine(w3, chain_sync.confirmations)
    await chain_sync.sync_once()

    async with sessions() as s:
        claims = list(
            await s.scalars(
                select(Anomaly).where(Anomaly.kind == "unexpected-Claimed").order_by(Anomaly.id)
            )
        )
    assert [(a.outflow, a.log["args"]["account"]) for a in claims] == [
        (10**18, participant.address),
        (2 * 10**18, stranger.address),
    ]
    assert f"{participant.address} claimed {10**18} wei, ledger had 0" in claims[0].detail
    assert f"claim by unknown account {stranger.address}" in claims[1].detail
