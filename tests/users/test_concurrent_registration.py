"""Registrations at once: the lease lock is held only while a slot is chosen and written, never
across the signer's round trip, and no slot is given twice. An API process lets only
`registration_concurrency` of them reach the database at a time, and never holds that turn
across the signer's round trip either."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.app import create_app
from backend.chain.signer_client import Signature, SignerClient
from backend.core.settings import Settings
from backend.models import LeaseStatus, SlotLease, User
from backend.users import service
from devtools import dapp
from tests.fixtures.ledger import grow_confirmed_tree

TREE = 63  # slots 0..62 confirmed: the next 64 slots all have a confirmed parent


async def register(
    api: httpx.AsyncClient, acct: LocalAccount, referrer: str, tokens: Any = None
) -> dict[str, Any]:
    r = await dapp.register(api, acct, referrer, tokens)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_simultaneous_registrations_lease_distinct_slots(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], company: LocalAccount
) -> None:
    await grow_confirmed_tree(sessions, TREE)
    accounts = [Account.create() for _ in range(40)]
    wallets = [a.address for a in accounts]
    bodies = await asyncio.gather(*(register(api, a, company.address) for a in accounts))
    slots = [int(b["payload"]["slot"]) for b in bodies]
    assert sorted(slots) == list(range(TREE, TREE + 40))
    assert {b["payload"]["user"] for b in bodies} == set(wallets)


async def test_a_wallet_asking_many_times_at_once_holds_one_lease(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], company: LocalAccount
) -> None:
    await grow_confirmed_tree(sessions, TREE)
    acct = Account.create()
    wallet = acct.address
    tokens = await dapp.sign_in(api, acct)
    bodies = await asyncio.gather(
        *(register(api, acct, company.address, tokens) for _ in range(10))
    )
    assert len({b["payload"]["slot"] for b in bodies}) == 1
    assert len({b["signature"] for b in bodies}) == 1
    async with sessions() as s:
        leases = await s.scalar(
            select(func.count())
            .select_from(SlotLease)
            .join(User, User.id == SlotLease.user_id)
            .where(User.wallet == wallet, SlotLease.status == LeaseStatus.LEASED)
        )
    assert leases == 1


class GatedSigner:
    """The real signer, except that the first registration's signature waits until another
    registration has been answered: possible only if no lock is held while signing."""

    def __init__(self, inner: SignerClient) -> None:
        self.inner = inner
        self.signing_first = asyncio.Event()
        self.other_answered = asyncio.Event()

    async def sign(self, primary_type: str, message: dict[str, Any]) -> Signature:
        if not self.signing_first.is_set():
            self.signing_first.set()
            await asyncio.wait_for(self.other_answered.wait(), timeout=20)
        return await self.inner.sign(primary_type, message)


@pytest.fixture(params=[4, 1], ids=["4-at-a-time", "1-at-a-time"])
async def gated(
    settings: Settings, seeded: int, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    async with SignerClient(settings.signer_url, settings.signer_token.get_secret_value()) as c:
        signer = GatedSigner(c)
        one_at_a_time = settings.model_copy(update={"registration_concurrency": request.param})
        app = create_app(one_at_a_time, signer=signer)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                yield client, signer


async def test_the_signer_is_asked_outside_the_lease_lock(
    gated: tuple[httpx.AsyncClient, GatedSigner],
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
) -> None:
    api, signer = gated
    await grow_confirmed_tree(sessions, TREE)
    first = asyncio.create_task(register(api, Account.create(), company.address))
    await asyncio.wait_for(signer.signing_first.wait(), timeout=20)  # inside the signer call
    second = await register(api, Account.create(), company.address)
    signer.other_answered.set()
    assert int((await first)["payload"]["slot"]) == TREE
    assert int(second["payload"]["slot"]) == TREE + 1


async def test_one_registration_at_a_time_per_process_still_serves_everyone(
    settings: Settings,
    seeded: int,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await grow_confirmed_tree(sessions, TREE)
    inside, most = 0, 0
    reserve = service.lease_registration

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        try:
            await asyncio.sleep(0.01)  # let the others try to get in meanwhile
            return await reserve(*args, **kwargs)
        finally:
            inside -= 1

    monkeypatch.setattr(service, "lease_registration", counted)
    app = create_app(settings.model_copy(update={"registration_concurrency": 1}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
            accounts = [Account.create() for _ in range(12)]
            bodies = await asyncio.gather(*(register(api, a, company.address) for a in accounts))
    assert sorted(int(b["payload"]["slot"]) for b in bodies) == list(range(TREE, TREE + 12))
    assert most == 1
