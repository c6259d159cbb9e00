"""`GET /users/me`: what a participant sees of itself is what the ledger holds, before and
after its registration is final."""

from __future__ import annotations

from typing import Any

import httpx
from eth_account.signers.local import LocalAccount
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web3 import Web3

from backend.models import PoolNode, Reward, UserBalance
from devtools import dapp
from devtools.wallet import send_as_wallet
from listener.sync import ChainSync
from tests.fixtures.flows import sponsor_chain
from tests.fixtures.services import new_wallet
from tests.fixtures.wallets import mine


async def me(api: httpx.AsyncClient, acct: LocalAccount) -> dict[str, Any]:
    r = await api.get("/users/me", headers=dapp.bearer(await dapp.sign_in(api, acct)))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_me_shows_the_registration_awaiting_payment_then_the_placement(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    company: LocalAccount,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    acct = new_wallet(w3)
    tokens = await dapp.sign_in(api, acct)
    r = await dapp.register(api, acct, company.address, tokens)
    assert r.status_code == 200, r.text
    answer = r.json()

    before = await me(api, acct)
    assert before["status"] == "pending"
    assert before["referrer"] == company.address
    assert before["positions"] == []
    assert before["pendingRegistration"] == {
        "slot": int(answer["payload"]["slot"]),
        "deadline": answer["deadline"],
        "nonce": answer["nonce"],
        "signed": True,
    }

    assert send_as_wallet(w3, acct, answer["tx"])["status"] == 1
    mine(w3, chain_sync.confirmations)
    await chain_sync.sync_once()

    after = await me(api, acct)
    assert after["status"] == "active"
    assert after["pendingRegistration"] is None
    async with sessions() as s:
        node = await s.scalar(select(PoolNode).where(PoolNode.user_id == after["id"]))
    assert node is not None
    assert after["positions"] == [
        {
            "level": 1,
            "slot": int(answer["payload"]["slot"]),
            "filled": node.filled,
            "completed": node.completed,
            "reserved": str(node.reserved),
        }
    ]


async def test_me_balances_and_referrals_are_the_ledgers(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    company: LocalAccount,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    sponsor, _first, _second = await sponsor_chain(api, w3, chain_sync, company.address, 3)
    # A second direct referral of `sponsor`, left unpaid: counted, not active.
    unpaid = new_wallet(w3)
    assert (await dapp.register(api, unpaid, sponsor.address)).status_code == 200

    body = await me(api, sponsor)
    async with sessions() as s:
        balance = await s.get(UserBalance, body["id"])
        sums = (
            await s.execute(
                select(Reward.kind, Reward.status, func.sum(Reward.amount))
                .where(Reward.user_id == body["id"])
                .group_by(Reward.kind, Reward.status)
            )
        ).all()
    assert balance is not None and balance.pending > 0
    assert {k: int(v) for k, v in body["balances"]["byStatus"].items()} == {
        status: int(getattr(balance, status)) for status in body["balances"]["byStatus"]
    }
    assert set(body["balances"]["byStatus"]) == {
        "pending",
        "held",
        "reserved",
        "batched",
        "claimable",
        "paid",
        "reinvested",
    }
    assert {
        (kind, status): int(total)
        for kind, by_status in body["balances"]["byType"].items()
        for status, total in by_status.items()
    } == {(kind, status): int(total) for kind, status, total in sums}
    assert body["referrals"] == {"direct": 2, "active": 1}
    assert body["referrer"] == company.address
