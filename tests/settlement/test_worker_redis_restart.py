"""`autopool worker` outlives a Redis restart: its schedule cannot enqueue while Redis is
down (every queued message is lost with it), and once Redis is back the next cycle pays what
is owed. Before the fix, the first failed enqueue ended the whole worker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
from eth_account.signers.local import LocalAccount
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web3 import Web3

from backend.core.settings import Settings
from devtools.processes import REPO_ROOT, stop_group
from devtools.stack import RedisServer
from listener.sync import ChainSync
from tests.fixtures.flows import sponsor_chain
from tests.fixtures.services import settings_env
from tests.fixtures.wallets import mine
from tests.settlement.helpers import rewards_by_status


def start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """`autopool worker`: the Dramatiq worker and its schedule, as production runs it."""
    return subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "worker", "--processes", "1", "--threads", "1"],
        cwd=REPO_ROOT,
        env={**os.environ, **settings_env(settings)},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


async def test_the_worker_outlives_a_redis_restart_and_pays_after_it(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    settings: Settings,
    tmp_path: Path,
) -> None:
    redis = RedisServer(tmp_path)
    redis.start()
    settings = settings.model_copy(
        update={"redis_url": redis.url, "settlement_interval_seconds": 0.3}
    )
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        redis.kill()
        await asyncio.sleep(2.0)  # several scheduled ticks with nowhere to enqueue
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-2000:]
        redis.start()  # on the same port, empty
        await sponsor_chain(api, w3, chain_sync, company.address, 2)
        for _ in range(120):
            mine(w3, chain_sync.confirmations)
            await chain_sync.sync_once()
            owed = await rewards_by_status(sessions)
            if not owed.get("pending") and not owed.get("batched"):
                break
            await asyncio.sleep(0.5)
        else:
            raise AssertionError(f"not paid after the restart: {owed}")
        assert owed.get("paid")
        assert worker.poll() is None
    finally:
        stop_group(worker)
        redis.stop()
