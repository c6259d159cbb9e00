"""Rate limits per client address and per signed-in wallet, on Redis: 429 with Retry-After
when over. A route for signed-in wallets counts the address and then the wallet in one Redis
round trip; the windows are the ones `limits` reads, shared with the routes that count the
address alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from eth_account import Account
from fastapi import FastAPI
from redis.asyncio import Redis

from backend.app import create_app
from backend.core.ratelimit import _item
from backend.core.settings import Settings
from tests.fixtures.services import token_for

IP = "198.51.100.23"


@asynccontextmanager
async def started(settings: Settings, **limits: Any) -> AsyncIterator[FastAPI]:
    redis = Redis.from_url(settings.redis_url)
    try:
        async for key in redis.scan_iter("LIMITS:*"):  # windows left by an earlier test
            await redis.delete(key)
    finally:
        await redis.aclose()
    app = create_app(settings.model_copy(update=limits))
    async with app.router.lifespan_context(app):
        yield app


@asynccontextmanager
async def client(app: FastAPI, ip: str = IP) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(ip, 40_000))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
        yield c


def limited(r: httpx.Response, scope: str) -> None:
    assert r.status_code == 429, r.text
    assert r.json()["type"].endswith("/rate-limited")
    assert f"({scope})" in r.json()["detail"]
    assert 1 <= int(r.headers["retry-after"]) <= 61


async def test_an_address_over_its_limit_gets_429_and_another_address_does_not(
    settings: Settings, seeded: int
) -> None:
    async with started(settings, rate_limit_default="3/minute") as app:
        async with client(app) as c:
            assert [(await c.get("/health")).status_code for _ in range(3)] == [200] * 3
            limited(await c.get("/health"), "ip")
        async with client(app, "198.51.100.24") as other:
            assert (await other.get("/health")).status_code == 200


async def test_a_wallet_over_its_limit_gets_429_and_another_wallet_does_not(
    settings: Settings, seeded: int
) -> None:
    async with started(settings, rate_limit_wallet="2/minute") as app:
        alice = token_for(app, seeded, Account.create().address)
        bob = token_for(app, seeded, Account.create().address)
        async with client(app) as c:
            assert [(await c.get("/users/me", headers=alice)).status_code for _ in range(2)] == [
                200,
                200,
            ]
            limited(await c.get("/users/me", headers=alice), "wallet")
            assert (await c.get("/users/me", headers=bob)).status_code == 200


async def test_signed_in_routes_count_the_address_first_and_stop_there(
    settings: Settings, seeded: int
) -> None:
    async with started(
        settings, rate_limit_default="3/minute", rate_limit_wallet="5/minute"
    ) as app:
        wallet = Account.create().address
        alice = token_for(app, seeded, wallet)
        async with client(app) as c:
            assert (await c.get("/health")).status_code == 200  # the address alone
            for _ in range(2):  # the address and the wallet together, the same window
                assert (await c.get("/users/me", headers=alice)).status_code == 200
            limited(await c.get("/users/me", headers=alice), "ip")
            limited(await c.get("/health"), "ip")
        res = app.state.resources
        stats = await res.limiter.get_window_stats(_item("5/minute"), "wallet", wallet)
        assert stats.remaining == 3  # the refused request was not counted for the wallet
        stats = await res.limiter.get_window_stats(_item("3/minute"), "ip", IP)
        assert stats.remaining == 0


async def test_a_caller_without_a_valid_token_still_counts_against_its_address(
    settings: Settings, seeded: int
) -> None:
    async with started(settings, rate_limit_default="2/minute") as app, client(app) as c:
        for headers in ({}, {"Authorization": "Bearer not-a-jwt"}):
            assert (await c.get("/users/me", headers=headers)).status_code == 401
        limited(await c.get("/users/me", headers={"Authorization": "Bearer x"}), "ip")


async def test_auth_and_admin_routes_have_their_own_stricter_address_limits(
    settings: Settings, seeded: int
) -> None:
    async with started(settings, rate_limit_auth="1/minute", rate_limit_admin="1/minute") as app:
        admin = token_for(app, seeded, Account.create().address)
        async with client(app) as c:
            nonce = {"wallet": Account.create().address}
            assert (await c.get("/auth/nonce", params=nonce)).status_code == 200
            limited(await c.get("/auth/nonce", params=nonce), "ip-auth")
            assert (await c.get("/admin/audit", headers=admin)).status_code == 403
            limited(await c.get("/admin/audit", headers=admin), "ip-admin")
            assert (await c.get("/health")).status_code == 200


@pytest.mark.parametrize("path", ["/health", "/users/me"])
async def test_without_redis_requests_are_let_through(
    settings: Settings, seeded: int, path: str
) -> None:
    unreachable = "redis://127.0.0.1:1/0"
    app = create_app(
        settings.model_copy(
            update={
                "redis_url": unreachable,
                "rate_limit_default": "1/minute",
                "rate_limit_wallet": "1/minute",
            }
        )
    )
    async with app.router.lifespan_context(app):
        headers = token_for(app, seeded, Account.create().address)
        async with client(app) as c:
            for _ in range(3):
                assert (await c.get(path, headers=headers)).status_code == 200
