"""With `listener_ws_url` set, the listener syncs as soon as a block arrives (`newHeads` over
WebSocket) instead of at its next poll."""

from __future__ import annotations

import asyncio
import time

import httpx
from eth_account.signers.local import LocalAccount
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web3 import Web3

from backend.core.settings import Settings
from backend.models import User
from devtools.anvil import AnvilNode
from devtools.wallet import send_as_wallet
from listener.main import run
from tests.fixtures.flows import request_registration
from tests.fixtures.services import new_wallet
from tests.fixtures.wallets import mine

POLL_SECONDS = 120.0  # far longer than the test may wait: only a new head can wake it


async def active(sessions: async_sessionmaker[AsyncSession], wallet: str) -> bool:
    async with sessions() as s:
        return await s.scalar(select(User.status).where(User.wallet == wallet)) == "active"


async def test_a_new_head_wakes_the_listener_before_its_next_poll(
    api: httpx.AsyncClient,
    w3: Web3,
    anvil: AnvilNode,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    settings: Settings,
) -> None:
    settings = settings.model_copy(
        update={
            "listener_poll_seconds": POLL_SECONDS,
            "listener_ws_url": f"ws://127.0.0.1:{anvil.port}",
        }
    )
    stop = asyncio.Event()
    listener = asyncio.create_task(run(settings, stop))
    try:
        await asyncio.sleep(1.0)  # its first pass (nothing to settle) and its subscription
        wallet = new_wallet(w3)
        body = await request_registration(api, wallet, company.address)
        send_as_wallet(w3, wallet, body["tx"])
        mine(w3, settings.confirmations)
        started = time.monotonic()
        while not await active(sessions, wallet.address):
            assert not listener.done(), listener.exception()
            assert time.monotonic() - started < 20, "not settled: no new head woke the listener"
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(listener, 30)
