"""`POST /treasury/transfer`: M-of-N approved by configured admin approvers, audited, then
executed by the settlement worker as a company payout."""

from __future__ import annotations

import json

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web3 import Web3

from backend.core.security import Role
from backend.core.settings import Settings
from backend.core.wiring import open_resources
from backend.models import AuditLog, User, UserBalance
from backend.payouts import service as payouts
from listener.sync import ChainSync
from tests.fixtures.flows import sponsor_chain
from tests.fixtures.services import token_for
from tests.fixtures.wallets import mine

APPROVERS = [Account.create().address for _ in range(3)]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"treasury_approvers": APPROVERS, "treasury_required_approvals": 2}
    )


async def test_a_transfer_needs_m_of_n_approvers_then_pays_the_company_out(
    app: FastAPI,
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    settings: Settings,
) -> None:
    redis = Redis.from_url(settings.redis_url)
    await redis.flushdb()
    await sponsor_chain(api, w3, chain_sync, company.address, 2)
    async with sessions() as s:
        company_id = await s.scalar(select(User.id).where(User.wallet == company.address))
        assert company_id is not None
        owed = (await s.get(UserBalance, company_id)).pending  # type: ignore[union-attr]
    assert owed > 0
    a, b, outsider = (
        token_for(app, 1, APPROVERS[0], Role.ADMIN),
        token_for(app, 1, APPROVERS[1], Role.ADMIN),
        token_for(app, 1, Account.create().address, Role.ADMIN),
    )
    proposal = {"amount": str(owed), "reason": "quarterly treasury sweep"}

    r = await api.post("/treasury/transfer", json=proposal, headers=outsider)
    assert r.status_code == 403 and r.json()["type"].endswith("not-a-treasury-approver")
    r = await api.post("/treasury/transfer", json={**proposal, "amount": str(owed + 1)}, headers=a)
    assert r.status_code == 409 and r.json()["type"].endswith("insufficient-company-balance")
    r = await api.post("/treasury/transfer", json={"amount": "1"}, headers=a)
    assert r.status_code == 422

    r = await api.post("/treasury/transfer", json=proposal, headers=a)
    assert r.status_code == 202, r.text
    transfer = r.json()
    assert (transfer["status"], transfer["approvals"], transfer["required"]) == (
        "proposed",
        [APPROVERS[0]],
        2,
    )
    r = await api.post("/treasury/transfer", json={"transferId": transfer["id"]}, headers=a)
    assert r.status_code == 409 and r.json()["type"].endswith("transfer-already-approved")
    assert await redis.hvals("dramatiq:settlement.msgs") == []

    r = await api.post("/treasury/transfer", json={"transferId": transfer["id"]}, headers=b)
    assert r.status_code == 202 and r.json()["status"] == "approved"
    (raw,) = await redis.hvals("dramatiq:settlement.msgs")
    message = json.loads(raw)
    assert message["actor_name"] == "build_batches"
    assert message["args"] == [f"treasury:{transfer['id']}", company_id]
    await redis.aclose()
    r = await api.post("/treasury/transfer", json={"transferId": transfer["id"]}, headers=b)
    assert r.status_code == 409 and r.json()["type"].endswith("transfer-wrong-state")

    async with sessions() as s:
        actions = list(
            await s.scalars(
                select(AuditLog.action)
                .where(AuditLog.action.like("treasury.%"))
                .order_by(AuditLog.id)
            )
        )
    assert actions == ["treasury.transfer.propose", "treasury.transfer.approve"]

    # What the worker does with the message: the company's own batch, confirmed.
    async with open_resources(settings) as res:
        await payouts.build_batches(res, created_by="treasury", limit=5, only_users=[company_id])
        await payouts.sign_built(res)
        await payouts.send_signed(res)
    mine(w3, chain_sync.confirmations)
    await chain_sync.sync_once()
    async with sessions() as s:
        balance = await s.get(UserBalance, company_id)
    assert balance is not None and (balance.pending, balance.paid) == (0, owed)
