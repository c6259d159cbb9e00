"""The whole path once, with real parts: API → signer service → wallet → contract (Anvil) →
listener → ledger (PostgreSQL) → settlement worker (Dramatiq on Redis) → contract → listener.
"""

from __future__ import annotations

import dramatiq
import httpx
import pytest
from eth_account.signers.local import LocalAccount
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web3 import Web3

from backend.core.settings import Settings, get_settings
from backend.models import LIABILITY_STATUSES, PayoutBatch, PoolNode, Reward, User
from devtools import dapp
from devtools.wallet import send_as_wallet
from listener.sync import ChainSync
from tests.fixtures.services import Deployment, new_wallet, settings_env
from tests.fixtures.wallets import gas_cost, mine

ENTRY = 20 * 10**18


async def rewards_of(
    sessions: async_sessionmaker[AsyncSession], wallet: str, statuses: tuple[str, ...]
) -> int:
    async with sessions() as s:
        total = await s.scalar(
            select(func.coalesce(func.sum(Reward.amount), 0))
            .join(User, User.id == Reward.user_id)
            .where(User.wallet == wallet, Reward.status.in_(statuses))
        )
    return int(total)


async def liabilities(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as s:
        total = await s.scalar(
            select(func.coalesce(func.sum(Reward.amount), 0)).where(
                Reward.status.in_(LIABILITY_STATUSES)
            )
        )
    return int(total)


def run_settlement_worker(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Enqueue `settle_pending` on Redis and let a real Dramatiq worker run it."""
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    from backend.payouts.tasks import settle_pending

    broker = settle_pending.broker
    broker.flush_all()
    settle_pending.send()
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        broker.join(settle_pending.queue_name, timeout=60_000)
        worker.join()
    finally:
        worker.stop()
        get_settings.cache_clear()


@pytest.mark.chain
async def test_seven_sponsored_registrations_settle_and_pay_out_to_the_wei(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    deployment: Deployment,
    company: LocalAccount,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wallets = [new_wallet(w3) for _ in range(7)]
    everyone = [company.address] + [a.address for a in wallets]
    before = {addr: w3.eth.get_balance(addr) for addr in everyone}
    spent = {addr: 0 for addr in everyone}
    paid_in = {addr: 0 for addr in everyone}

    sponsor = company.address
    for expected_slot, acct in enumerate(wallets, start=1):
        tokens = await dapp.sign_in(api, acct)
        r = await dapp.register(api, acct, sponsor, tokens)
        assert r.status_code == 200, r.text
        body = r.json()
        assert int(body["payload"]["slot"]) == expected_slot
        assert int(body["tx"]["value"]) == ENTRY
        # A wallet retrying the request gets the same signed payload, not a second slot.
        again = await dapp.register(api, acct, sponsor, tokens)
        assert again.json()["signature"] == body["signature"]

        receipt = send_as_wallet(w3, acct, body["tx"])
        assert receipt["status"] == 1
        spent[acct.address] += gas_cost(receipt)
        paid_in[acct.address] += ENTRY
        mine(w3, settings.confirmations)
        assert await chain_sync.sync_once() >= 1  # the first sync also reads the deployment's
        async with sessions() as s:
            user = await s.scalar(select(User).where(User.wallet == acct.address))
        assert user is not None and user.status == "active"
        sponsor = acct.address

    async with sessions() as s:
        active = (await s.scalars(select(User.wallet).where(User.status == "active"))).all()
        slots = dict(
            (
                await s.execute(select(PoolNode.slot, PoolNode.user_id).where(PoolNode.level == 1))
            ).all()
        )
    assert set(everyone) == set(active)
    assert sorted(slots) == list(range(8))

    contract_balance = w3.eth.get_balance(deployment.contract.address)
    assert contract_balance == 7 * ENTRY
    assert await liabilities(sessions) == contract_balance

    # Pay the first three recipients only (one batch of three in the cycle), so unpaid
    # liabilities remain to reconcile.
    one_batch = {"max_batch_recipients": 3, "settlement_max_batches_per_cycle": 1}
    run_settlement_worker(settings.model_copy(update=one_batch), monkeypatch)
    mine(w3, settings.confirmations)
    assert await chain_sync.sync_once() >= 2  # PayoutExecuted per recipient + BatchExecuted

    async with sessions() as s:
        batch = await s.scalar(select(PayoutBatch))
    assert batch is not None and batch.status == "executed" and batch.recipient_count == 3

    for addr in everyone:
        settled = await rewards_of(sessions, addr, ("paid",))
        change = w3.eth.get_balance(addr) - before[addr]
        assert change == settled - paid_in[addr] - spent[addr], addr
    contract_balance = w3.eth.get_balance(deployment.contract.address)
    total_paid = sum([await rewards_of(sessions, a, ("paid",)) for a in everyone])
    assert total_paid == int(batch.total) > 0
    assert contract_balance == 7 * ENTRY - total_paid
    assert await liabilities(sessions) == contract_balance > 0

    summary = (await api.get("/treasury/summary")).json()
    assert summary["balanced"] is True
    assert int(summary["contract_balance"]) == contract_balance
    assert int(summary["inflows"]) == 7 * ENTRY
    assert int(summary["outflows"]) == total_paid
    assert int(summary["liabilities"]["total"]) == contract_balance
