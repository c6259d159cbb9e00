"""The listener as real processes: one active copy, a standby that takes over within seconds
when the active one is SIGKILLed (mid-range or idle), and nothing lost or settled twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from eth_account.signers.local import LocalAccount
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web3 import Web3

from backend.core.settings import Settings
from backend.models import BlockchainSync, ChainEvent, User
from devtools.processes import REPO_ROOT, stop_process
from devtools.wallet import send_as_wallet
from tests.fixtures.flows import request_registration
from tests.fixtures.services import new_wallet, settings_env
from tests.fixtures.wallets import mine


def start_listener(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **settings_env(settings),
        "AUTOPOOL_LISTENER_POLL_SECONDS": "0.2",
        "AUTOPOOL_LISTENER_STANDBY_POLL_SECONDS": "0.5",
        "AUTOPOOL_LISTENER_BATCH_BLOCKS": "3",  # many small ranges: a kill lands mid-stream
    }
    out = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "listener"], cwd=REPO_ROOT, env=env, stdout=out, stderr=out
    )


async def generation(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as s:
        return int(await s.scalar(select(BlockchainSync.leader_generation)) or 0)


async def wait_until(predicate, what: str, seconds: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out: {what}")


async def test_a_standby_takes_over_when_the_active_listener_is_killed(
    settings: Settings,
    seeded: int,
    api: httpx.AsyncClient,
    w3: Web3,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    tmp_path: Path,
) -> None:
    first = start_listener(settings, tmp_path / "first.log")
    standby = None
    try:
        await wait_until(lambda: _ge(sessions, 1), "the first listener to lead")
        standby = start_listener(settings, tmp_path / "standby.log")
        # Registrations (both free slots under the root) land while the first listener works
        # through small ranges.
        wallets = []
        sponsor = company.address
        for _ in range(2):
            acct = new_wallet(w3)
            body = await request_registration(api, acct, sponsor)
            send_as_wallet(w3, acct, body["tx"])
            wallets.append(acct)
        mine(w3, 1)
        first.send_signal(signal.SIGKILL)  # wherever it is: between ranges or inside one
        first.wait()
        mine(w3, settings.confirmations + 3)
        started = time.monotonic()
        await wait_until(lambda: _ge(sessions, 2), "the standby to take the lead", 15)
        takeover = time.monotonic() - started

        async def all_active() -> bool:
            async with sessions() as s:
                n = await s.scalar(
                    select(func.count())
                    .select_from(User)
                    .where(User.wallet.in_([a.address for a in wallets]), User.status == "active")
                )
            return n == len(wallets)

        await wait_until(all_active, "every registration to be settled by the new leader")
        assert takeover < 10, f"takeover took {takeover:.1f} s"
        async with sessions() as s:
            registrations = await s.scalar(
                select(func.count())
                .select_from(ChainEvent)
                .where(ChainEvent.name == "RegistrationAccepted")
            )
        assert registrations == len(wallets)  # each log stored (and settled) once
    finally:
        for proc in (first, standby):
            if proc is not None:
                stop_process(proc)
    # The invariants fixture then checks every balance and the contract to the wei.


async def _ge(sessions: async_sessionmaker[AsyncSession], n: int) -> bool:
    return await generation(sessions) >= n
