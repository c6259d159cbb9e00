"""When the signer is down or refuses, registration answers with a problem naming why (never a
500), and the wallet's lease stays its own: a retry gets the same slot, never a second one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.app import create_app
from backend.core.errors import PROBLEM_BASE
from backend.core.settings import Settings
from backend.models import SlotLease, Transaction, User
from devtools import dapp
from devtools.anvil import AnvilNode
from devtools.processes import SignerProcess
from tests.fixtures.services import Deployment, start_test_signer


async def lease_of(
    sessions: async_sessionmaker[AsyncSession], wallet: str
) -> list[tuple[int, str]]:
    async with sessions() as s:
        rows = await s.execute(
            select(SlotLease.slot, SlotLease.status)
            .join(User, User.id == SlotLease.user_id)
            .where(User.wallet == wallet)
        )
        return [tuple(r) for r in rows.all()]  # type: ignore[misc]


async def test_a_signer_outage_is_503_with_retry_after_and_the_lease_is_kept(
    api: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    signer_service: SignerProcess,
) -> None:
    signer_service.stop()
    acct = Account.create()
    wallet = acct.address
    tokens = await dapp.sign_in(api, acct)
    for _ in range(2):  # the wallet retries while the signer is still down
        r = await dapp.register(api, acct, company.address, tokens)
        assert r.status_code == 503, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["type"] == PROBLEM_BASE + "signer-unavailable"
        assert int(r.headers["retry-after"]) > 0
    assert await lease_of(sessions, wallet) == [(1, "leased")]
    async with sessions() as s:
        signatures = list(await s.scalars(select(Transaction.signature)))
    assert signatures == [None]  # leased and durable, never signed


@pytest.fixture
def strict_signer(
    deployment: Deployment, anvil: AnvilNode, tmp_path: Path, database_url: str
) -> Iterator[SignerProcess]:
    """A signer whose policy allows payload deadlines at most 60 s ahead (the API asks 600)."""
    proc = start_test_signer(
        deployment,
        anvil,
        tmp_path,
        database_url,
        "strict",
        {"AUTOPOOL_SIGNER_MAX_DEADLINE_WINDOW_SECONDS": "60"},
    )
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def strict_api(
    settings: Settings, seeded: int, strict_signer: SignerProcess
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        settings.model_copy(
            update={
                "signer_url": strict_signer.url,
                "signer_token": SecretStr(strict_signer.token),
            }
        )
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


async def test_a_signer_refusal_is_502_naming_the_rule(
    strict_api: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
) -> None:
    acct = Account.create()
    wallet = acct.address
    r = await dapp.register(strict_api, acct, company.address)
    assert r.status_code == 502, r.text
    problem = r.json()
    assert problem["type"] == PROBLEM_BASE + "signer-refused"
    assert problem["rule"]
    assert await lease_of(sessions, wallet) == [(1, "leased")]
