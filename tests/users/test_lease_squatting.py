"""Lease squatting is bad input: leasing slots costs nothing on chain, so one client address
may hold only a few unpaid leases, and hundreds of unpaid leases do not stop another wallet."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.app import create_app
from backend.core.db import unit_of_work
from backend.core.errors import PROBLEM_BASE
from backend.core.settings import Settings
from backend.core.wiring import build_resources
from backend.users import service as users
from devtools import dapp
from tests.fixtures.ledger import grow_confirmed_tree

LIMIT = 5


@asynccontextmanager
async def client_at(app: FastAPI, ip: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(ip, 40_000))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client


async def test_one_client_holds_at_most_a_few_unpaid_leases(
    settings: Settings,
    seeded: int,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
) -> None:
    await grow_confirmed_tree(sessions, 63)
    app = create_app(settings.model_copy(update={"max_live_leases_per_ip": LIMIT}))
    async with app.router.lifespan_context(app):
        async with client_at(app, "198.51.100.7") as squatter:
            answers = [
                await dapp.register(squatter, Account.create(), company.address) for _ in range(200)
            ]
        statuses = [r.status_code for r in answers]
        assert statuses[:LIMIT] == [200] * LIMIT
        assert set(statuses[LIMIT:]) == {429}
        refused = answers[LIMIT]
        assert refused.json()["type"] == PROBLEM_BASE + "too-many-unpaid-leases"
        assert int(refused.headers["retry-after"]) > 0
        async with client_at(app, "203.0.113.9") as other:
            r = await dapp.register(other, Account.create(), company.address)
        assert r.status_code == 200, r.text
        assert int(r.json()["payload"]["slot"]) == 63 + LIMIT


async def test_hundreds_of_unpaid_leases_do_not_stop_another_wallet(
    api: httpx.AsyncClient,
    settings: Settings,
    seeded: int,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
) -> None:
    await grow_confirmed_tree(sessions, 1023)
    res = build_resources(settings)
    try:
        for i in range(300):  # unpaid leases from 60 addresses, 5 each
            async with unit_of_work(sessions) as s:
                await users.lease_registration(
                    s, res, Account.create().address, company.address, client_ip=f"10.0.{i // 5}.1"
                )
    finally:
        await res.aclose()
    r = await dapp.register(api, Account.create(), company.address)
    assert r.status_code == 200, r.text
    assert int(r.json()["payload"]["slot"]) == 1023 + 300
