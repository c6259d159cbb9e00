"""Bad input to POST /users/register gets a 4xx problem+json with a stable type and writes
nothing."""

from __future__ import annotations

import httpx
import pytest
from eth_account import Account
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.core.db import unit_of_work
from backend.core.errors import PROBLEM_BASE
from backend.models import User, UserBalance
from tests.fixtures.db import row_counts


async def add_user(
    sessions: async_sessionmaker[AsyncSession], *, status: str = "active", frozen: bool = False
) -> str:
    wallet = Account.create().address
    async with unit_of_work(sessions) as s:
        user = User(wallet=wallet, status=status, is_frozen=frozen)
        s.add(user)
        await s.flush()
        s.add(UserBalance(user_id=user.id))
    return wallet


async def assert_refused(
    api: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    body: dict[str, str],
    status: int,
    problem_type: str,
) -> dict[str, object]:
    before = await row_counts(sessions)
    r = await api.post("/users/register", json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["type"] == PROBLEM_BASE + problem_type
    assert problem["status"] == status and problem["detail"]
    assert await row_counts(sessions) == before
    return problem


async def test_unknown_referrer_is_refused(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await assert_refused(
        api,
        sessions,
        {"wallet": Account.create().address, "referrer": Account.create().address},
        422,
        "unknown-referrer",
    )


async def test_self_referral_is_refused(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    wallet = Account.create().address
    await assert_refused(
        api, sessions, {"wallet": wallet, "referrer": wallet}, 422, "self-referral"
    )


async def test_self_referral_is_refused_even_when_case_differs(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    wallet = await add_user(sessions)
    await assert_refused(
        api, sessions, {"wallet": wallet.lower(), "referrer": wallet}, 409, "already-registered"
    )
    fresh = Account.create().address
    await assert_refused(
        api, sessions, {"wallet": fresh.lower(), "referrer": fresh}, 422, "self-referral"
    )


@pytest.mark.parametrize(
    "wallet",
    [
        "0x123",
        "not-an-address",
        "52908400098527886E0F7030069857D2E4169EE7",  # no 0x prefix
        "0x52908400098527886e0F7030069857D2E4169EE7",  # wrong EIP-55 checksum
        "",
    ],
)
async def test_malformed_address_is_refused(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], wallet: str
) -> None:
    referrer = await add_user(sessions)
    problem = await assert_refused(
        api, sessions, {"wallet": wallet, "referrer": referrer}, 422, "validation-error"
    )
    assert "wallet" in str(problem["detail"])


async def test_wallet_already_registered_is_refused(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    referrer = await add_user(sessions)
    registered = await add_user(sessions)
    await assert_refused(
        api, sessions, {"wallet": registered, "referrer": referrer}, 409, "already-registered"
    )


async def test_frozen_referrer_is_refused(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    frozen = await add_user(sessions, frozen=True)
    await assert_refused(
        api,
        sessions,
        {"wallet": Account.create().address, "referrer": frozen},
        403,
        "referrer-frozen",
    )


async def test_referrer_whose_registration_is_unconfirmed_is_refused(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    pending = await add_user(sessions, status="pending")
    await assert_refused(
        api,
        sessions,
        {"wallet": Account.create().address, "referrer": pending},
        422,
        "referrer-not-active",
    )


async def test_second_registration_with_another_referrer_while_pending_is_refused(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], company: object
) -> None:
    other = await add_user(sessions)
    wallet = Account.create().address
    first = await api.post(
        "/users/register",
        json={"wallet": wallet, "referrer": company.address},  # type: ignore[attr-defined]
    )
    assert first.status_code == 200, first.text
    await assert_refused(
        api, sessions, {"wallet": wallet, "referrer": other}, 409, "registration-pending"
    )


async def test_unknown_field_is_refused(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    referrer = await add_user(sessions)
    await assert_refused(
        api,
        sessions,
        {"wallet": Account.create().address, "referrer": referrer, "slot": "0"},
        422,
        "validation-error",
    )
