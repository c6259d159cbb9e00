"""Payout events settle exactly what their batch line says, and a deferred payout goes
claimable → paid only when the chain says it was claimed, with conservation at every step."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web3 import Web3

from backend.chain.contract import batch_tuple
from backend.chain.typed_data import Domain, full_message
from backend.core.db import unit_of_work
from backend.core.settings import Settings
from backend.core.wiring import open_resources
from backend.models import Anomaly, PayoutLine, Reward, User, UserBalance
from backend.payouts import service
from backend.payouts.service import settle_once
from listener.sync import ChainSync
from tests.fixtures.flows import sponsor_chain
from tests.fixtures.invariants import check_ledger
from tests.fixtures.ledger import ledger_rows
from tests.fixtures.services import Deployment
from tests.fixtures.wallets import gas_cost, mine

REJECT_ALL = "0x60006000fd"  # PUSH1 0 PUSH1 0 REVERT: code that refuses every transfer


def send(w3: Web3, key: str, fn: Any) -> Any:
    acct = Account.from_key(key)
    tx = fn.build_transaction(
        {"from": acct.address, "nonce": w3.eth.get_transaction_count(acct.address)}
    )
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(acct.sign_transaction(tx).raw_transaction)
    )
    assert receipt["status"] == 1
    return receipt


async def balance_row(sessions: async_sessionmaker[AsyncSession], wallet: str) -> UserBalance:
    async with sessions() as s:
        row = await s.scalar(
            select(UserBalance)
            .join(User, User.id == UserBalance.user_id)
            .where(User.wallet == wallet)
        )
        assert row is not None
        return row


async def statuses_of(sessions: async_sessionmaker[AsyncSession], wallet: str) -> set[str]:
    async with sessions() as s:
        return set(
            await s.scalars(
                select(Reward.status)
                .join(User, User.id == Reward.user_id)
                .where(User.wallet == wallet, Reward.batch_id.is_not(None))
            )
        )


@pytest.mark.parametrize(
    "total_matches",
    [False, True],
    ids=["one-line-short", "lines-swapped-wei-same-total"],
)
async def test_a_payout_event_that_differs_from_its_batch_line_changes_nothing_but_an_anomaly(
    total_matches: bool,
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    deployment: Deployment,
) -> None:
    await sponsor_chain(api, w3, chain_sync, company.address, 2)
    async with unit_of_work(sessions) as s:
        batch = await service.build_batch(
            s, max_recipients=200, deadline_seconds=900, created_by="test"
        )
        message = await service.batch_message(s, batch)
    # A batch the ledger never built: its first line pays one wei less (a stolen signer key,
    # or a bug between the ledger and the signer).
    message["payouts"][0]["amount"] = str(int(message["payouts"][0]["amount"]) - 1)
    if total_matches:
        # The wei moves to another line: the batch's total is what the ledger built, so only
        # the check of each line against its own can refuse it.
        assert len(message["payouts"]) >= 2
        message["payouts"][1]["amount"] = str(int(message["payouts"][1]["amount"]) + 1)
    domain = Domain(chain_id=w3.eth.chain_id, verifying_contract=deployment.contract.address)
    signature = Account.sign_typed_data(
        deployment.signer_key, full_message=full_message(domain, "PayoutBatch", message)
    ).signature
    fn = deployment.contract.functions.executeBatchPayouts(batch_tuple(message), signature)
    before = await ledger_rows(sessions)
    send(w3, deployment.sender_key, fn)
    mine(w3, chain_sync.confirmations)

    await chain_sync.sync_once()  # no retry loop: the range is ingested
    # Not a row of the ledger changed: the line's rewards are still batched, the batch is
    # still waiting. The events are kept, as anomalies, with the BNB that left.
    listener_tables = ("chain_events", "blockchain_sync", "anomalies", "pending_events")
    after = await ledger_rows(sessions)
    assert {k: v for k, v in after.items() if k not in listener_tables} == {
        k: v for k, v in before.items() if k not in listener_tables
    }
    async with sessions() as s:
        anomalies = list(await s.scalars(select(Anomaly).order_by(Anomaly.id)))
    paid = int(message["payouts"][0]["amount"])
    assert (anomalies[0].kind, anomalies[0].outflow) == ("unexpected-PayoutExecuted", paid)


async def test_a_deferred_payout_is_claimable_until_claimed_then_paid(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    settings: Settings,
    deployment: Deployment,
    database_url: str,
) -> None:
    payee, _ = await sponsor_chain(api, w3, chain_sync, company.address, 2)
    owed = (await balance_row(sessions, payee.address)).pending
    assert owed > 0
    # The payee's account now refuses BNB (as a contract wallet might): its payout is deferred.
    w3.provider.make_request("anvil_setCode", [payee.address, REJECT_ALL])  # type: ignore[arg-type]
    async with open_resources(settings) as res:
        result = await settle_once(res)
    assert result.batch_id is not None
    mine(w3, chain_sync.confirmations)
    await chain_sync.sync_once()

    balance = await balance_row(sessions, payee.address)
    assert (balance.pending, balance.batched, balance.claimable, balance.paid) == (0, 0, owed, 0)
    assert await statuses_of(sessions, payee.address) == {"claimable"}
    async with sessions() as s:
        line = await s.scalar(select(PayoutLine).where(PayoutLine.recipient == payee.address))
    assert line is not None and line.status == "deferred" and line.amount == owed
    assert deployment.contract.functions.claimable(payee.address).call() == owed
    assert check_ledger(database_url, w3) == []  # conservation with the deferral held

    w3.provider.make_request("anvil_setCode", [payee.address, "0x"])  # type: ignore[arg-type]
    wallet_before = w3.eth.get_balance(payee.address)
    receipt = send(w3, payee.key.hex(), deployment.contract.functions.claim())
    assert w3.eth.get_balance(payee.address) == wallet_before + owed - gas_cost(receipt)
    mine(w3, chain_sync.confirmations)
    await chain_sync.sync_once()

    balance = await balance_row(sessions, payee.address)
    assert (balance.claimable, balance.paid) == (0, owed)
    assert await statuses_of(sessions, payee.address) == {"paid"}
    assert check_ledger(database_url, w3) == []


async def test_a_deferred_payout_claimed_to_another_address_is_paid_once(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    settings: Settings,
    deployment: Deployment,
    database_url: str,
) -> None:
    payee, _ = await sponsor_chain(api, w3, chain_sync, company.address, 2)
    owed = (await balance_row(sessions, payee.address)).pending
    w3.provider.make_request("anvil_setCode", [payee.address, REJECT_ALL])  # type: ignore[arg-type]
    async with open_resources(settings) as res:
        await settle_once(res)
    mine(w3, chain_sync.confirmations)
    await chain_sync.sync_once()
    w3.provider.make_request("anvil_setCode", [payee.address, "0x"])  # type: ignore[arg-type]

    receiver = Account.create().address
    send(w3, payee.key.hex(), deployment.contract.functions.claimTo(receiver))
    assert w3.eth.get_balance(receiver) == owed
    mine(w3, chain_sync.confirmations)
    await chain_sync.sync_once()

    balance = await balance_row(sessions, payee.address)
    assert (balance.claimable, balance.paid) == (0, owed)
    assert check_ledger(database_url, w3) == []


async def test_a_payout_settles_only_its_own_batch_of_a_recipient(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    settings: Settings,
) -> None:
    payee, _ = await sponsor_chain(api, w3, chain_sync, company.address, 2)
    async with unit_of_work(sessions) as s:
        first = (
            await service.build_batch(s, max_recipients=200, deadline_seconds=900, created_by="t")
        ).id
    await sponsor_chain(api, w3, chain_sync, payee.address, 1)  # the payee earns again
    async with unit_of_work(sessions) as s:
        second = (
            await service.build_batch(s, max_recipients=200, deadline_seconds=900, created_by="t")
        ).id
    async with open_resources(settings) as res:
        result = await settle_once(res)  # the oldest unfinished batch: the first
    assert result.batch_id == first
    mine(w3, chain_sync.confirmations)
    await chain_sync.sync_once()

    async with sessions() as s:
        by_batch = dict(
            (
                await s.execute(
                    select(Reward.batch_id, Reward.status)
                    .join(User, User.id == Reward.user_id)
                    .where(User.wallet == payee.address, Reward.batch_id.is_not(None))
                    .group_by(Reward.batch_id, Reward.status)
                )
            ).all()
        )
        line = await s.scalar(
            select(PayoutLine).where(
                PayoutLine.batch_id == second, PayoutLine.recipient == payee.address
            )
        )
    assert by_batch == {first: "paid", second: "batched"}
    assert line is not None and line.status == "batched"
    assert (await balance_row(sessions, payee.address)).batched == line.amount
