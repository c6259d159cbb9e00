"""Live events over WebSocket: a participant hears its own registration confirmed and its
rewards created, staff hear the pool, nobody hears anything without a valid token. Events go
out through Redis after the listener's commit, so any API replica serves any client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from eth_account.signers.local import LocalAccount
from fastapi import FastAPI
from web3 import Web3

from backend.core.security import Role
from devtools import dapp
from devtools.processes import free_port
from listener.sync import ChainSync
from tests.fixtures.flows import register_and_confirm
from tests.fixtures.services import new_wallet, token_for


@pytest.fixture
async def server(app: FastAPI) -> AsyncIterator[str]:
    """The app served by a real uvicorn on loopback (its resources are already started)."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    uvicorn_server = uvicorn.Server(config)
    task = asyncio.create_task(uvicorn_server.serve())
    while not uvicorn_server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.02)
    yield f"ws://127.0.0.1:{port}/ws"
    uvicorn_server.should_exit = True
    await task


async def receive_until(ws: Any, kind: str, user: str | None = None) -> dict[str, Any]:
    """The next message of `kind` (about `user` when given: Redis pub/sub channels are shared
    by every database of a server, so a parallel suite's staff events arrive here too)."""
    async with asyncio.timeout(15):
        while True:
            message: dict[str, Any] = json.loads(await ws.recv())
            if message["type"] == kind and (user is None or message["data"].get("user") == user):
                return message


async def test_a_participant_hears_its_registration_and_staff_hear_the_pool(
    app: FastAPI,
    api: httpx.AsyncClient,
    server: str,
    w3: Web3,
    chain_sync: ChainSync,
    company: LocalAccount,
) -> None:
    acct = new_wallet(w3)
    tokens = await dapp.sign_in(api, acct)
    staff = token_for(app, 1, company.address, Role.AUDITOR)["Authorization"].split()[1]
    async with (
        websockets.connect(f"{server}?token={tokens['accessToken']}") as mine,
        websockets.connect(f"{server}?token={staff}") as desk,
    ):
        hello = await receive_until(mine, "subscribed")
        assert hello["data"]["channels"] == [f"user:{tokens['user']['id']}"]
        assert "staff" in (await receive_until(desk, "subscribed"))["data"]["channels"]
        body = await register_and_confirm(api, w3, chain_sync, acct, company.address)
        confirmed = await receive_until(mine, "registration.confirmed")
        assert confirmed["data"]["slot"] == body["payload"]["slot"]
        placement = await receive_until(desk, "pool.placement", acct.address)
        assert placement["data"]["user"] == acct.address


async def test_the_sponsor_hears_its_reward_created(
    app: FastAPI,
    api: httpx.AsyncClient,
    server: str,
    w3: Web3,
    chain_sync: ChainSync,
    company: LocalAccount,
) -> None:
    sponsor = new_wallet(w3)
    await register_and_confirm(api, w3, chain_sync, sponsor, company.address)
    tokens = await dapp.sign_in(api, sponsor)
    async with websockets.connect(f"{server}?token={tokens['accessToken']}") as ws:
        await receive_until(ws, "subscribed")
        await register_and_confirm(api, w3, chain_sync, new_wallet(w3), sponsor.address)
        created = await receive_until(ws, "reward.created")
        assert int(created["data"]["byStatus"]["pending"]) > 0


async def test_no_token_no_events(server: str) -> None:
    for url in (server, f"{server}?token=forged"):
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(url):
                pass  # never reached: the handshake is refused
        assert refused.value.response.status_code == 403
