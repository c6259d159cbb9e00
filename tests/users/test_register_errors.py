"""Bad input to POST /users/register gets a 4xx problem+json with a stable type and writes
nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.core.db import unit_of_work
from backend.core.errors import PROBLEM_BASE
from backend.models import User, UserBalance
from devtools.dapp import bearer, sign_in
from tests.fixtures.db import row_counts


async def add_user(
    sessions: async_sessionmaker[AsyncSession], *, status: str = "active", frozen: bool = False
) -> LocalAccount:
    acct: LocalAccount = Account.create()
    async with unit_of_work(sessions) as s:
        user = User(wallet=acct.address, status=status, is_frozen=frozen)
        s.add(user)
        await s.flush()
        s.add(UserBalance(user_id=user.id))
    return acct


async def assert_refused(
    api: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    acct: LocalAccount,
    body: dict[str, Any],
    status: int,
    problem_type: str,
) -> dict[str, Any]:
    headers = bearer(await sign_in(api, acct))  # signing in writes its own rows first
    before = await row_counts(sessions)
    r = await api.post("/users/register", json=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = r.json()
    assert problem["type"] == PROBLEM_BASE + problem_type
    assert problem["status"] == status and problem["detail"]
    assert await row_counts(sessions) == before
    return problem


async def test_an_anonymous_caller_is_refused(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    referrer = await add_user(sessions)
    before = await row_counts(sessions)
    r = await api.post("/users/register", json={"referrer": referrer.address})
    assert r.status_code == 401
    assert r.json()["type"] == PROBLEM_BASE + "unauthorized"
    assert await row_counts(sessions) == before


async def test_unknown_referrer_is_refused(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await assert_refused(
        api,
        sessions,
        Account.create(),
        {"referrer": Account.create().address},
        422,
        "unknown-referrer",
    )


async def test_self_referral_is_refused(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    acct = Account.create()
    await assert_refused(api, sessions, acct, {"referrer": acct.address}, 422, "self-referral")


async def test_self_referral_is_refused_even_when_case_differs(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    acct = Account.create()
    await assert_refused(
        api, sessions, acct, {"referrer": acct.address.lower()}, 422, "self-referral"
    )


async def test_registering_another_wallet_is_refused(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    referrer = await add_user(sessions)
    await assert_refused(
        api,
        sessions,
        Account.create(),
        {"referrer": referrer.address, "wallet": Account.create().address},
        403,
        "forbidden",
    )


@pytest.mark.parametrize(
    "address",
    [
        "0x123",
        "not-an-address",
        "52908400098527886E0F7030069857D2E4169EE7",  # no 0x prefix
        "0x52908400098527886e0F7030069857D2E4169EE7",  # wrong EIP-55 checksum
        "",
    ],
)
async def test_malformed_address_is_refused(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], address: str
) -> None:
    problem = await assert_refused(
        api, sessions, Account.create(), {"referrer": address}, 422, "validation-error"
    )
    assert "referrer" in str(problem["detail"])


async def test_wallet_already_registered_is_refused(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    referrer = await add_user(sessions)
    registered = await add_user(sessions)
    await assert_refused(
        api, sessions, registered, {"referrer": referrer.address}, 409, "already-registered"
    )


async def test_frozen_referrer_is_refused(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    frozen = await add_user(sessions, frozen=True)
    await assert_refused(
        api, sessions, Account.create(), {"referrer": frozen.address}, 403, "referrer-frozen"
    )


async def test_referrer_whose_registration_is_unconfirmed_is_refused(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    pending = await add_user(sessions, status="pending")
    await assert_refused(
        api, sessions, Account.create(), {"referrer": pending.address}, 422, "referrer-not-active"
    )


async def test_second_registration_with_another_referrer_while_pending_is_refused(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], company: LocalAccount
) -> None:
    other = await add_user(sessions)
    acct = Account.create()
    first = await api.post(
        "/users/register",
        json={"referrer": company.address},
        headers=bearer(await sign_in(api, acct)),
    )
    assert first.status_code == 200, first.text
    await assert_refused(
        api, sessions, acct, {"referrer": other.address}, 409, "registration-pending"
    )


async def test_unknown_field_is_refused(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    referrer = await add_user(sessions)
    await assert_refused(
        api,
        sessions,
        Account.create(),
        {"referrer": referrer.address, "slot": "0"},
        422,
        "validation-error",
    )
