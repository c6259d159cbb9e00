"""`POST /users/withdraw`: a signed-in participant's pending rewards go out in an immediate
batch of its own, through the same worker and guarantees as every batch."""

from __future__ import annotations

import json

import httpx
from eth_account.signers.local import LocalAccount
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web3 import Web3

from backend.core.settings import Settings
from backend.core.wiring import open_resources
from backend.models import PayoutLine, User, UserBalance
from backend.payouts import service
from listener.sync import ChainSync
from tests.fixtures.flows import sponsor_chain
from tests.fixtures.services import token_for
from tests.fixtures.wallets import mine


async def queued(settings: Settings) -> list[dict[str, object]]:
    redis = Redis.from_url(settings.redis_url)
    try:
        raw = await redis.hvals("dramatiq:settlement.msgs")
        return [json.loads(m) for m in raw]
    finally:
        await redis.aclose()


async def test_a_withdrawal_is_paid_in_its_own_batch_and_only_once(
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
    await redis.aclose()
    payee, _ = await sponsor_chain(api, w3, chain_sync, company.address, 2)
    async with sessions() as s:
        user = await s.scalar(select(User).where(User.wallet == payee.address))
        assert user is not None
        owed = (await s.get(UserBalance, user.id)).pending  # type: ignore[union-attr]
    assert owed > 0
    headers = token_for(app, user.id, payee.address)

    assert (await api.post("/users/withdraw")).status_code == 401
    r = await api.post("/users/withdraw", headers=headers)
    assert r.status_code == 202, r.text
    assert r.json() == {"pending": str(owed), "batched": "0", "status": "queued"}
    (message,) = await queued(settings)
    assert message["actor_name"] == "build_batches" and message["args"][1] == user.id  # type: ignore[index]

    # What the worker's `build_batches(only_user=...)` does, then the listener confirms.
    async with open_resources(settings) as res:
        built = await service.build_batches(
            res, created_by="withdraw", limit=5, only_users=[user.id]
        )
        await service.sign_built(res)
        await service.send_signed(res)
    mine(w3, chain_sync.confirmations)
    await chain_sync.sync_once()
    async with sessions() as s:
        lines = list(await s.scalars(select(PayoutLine).where(PayoutLine.batch_id == built[0])))
        balance = await s.get(UserBalance, user.id)
    assert [(ln.recipient, ln.amount, ln.status) for ln in lines] == [(payee.address, owed, "paid")]
    assert balance is not None and (balance.pending, balance.paid) == (0, owed)

    again = await api.post("/users/withdraw", headers=headers)
    assert again.status_code == 409
    assert again.json()["type"].endswith("nothing-to-withdraw")
