"""`autopool-listener`: one active copy (a Postgres advisory lock elects it; a standby waits)."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from sqlalchemy import text

from backend.core.db import LOCK_LISTENER_LEADER
from backend.core.logging import configure_logging, log
from backend.core.settings import Settings, get_settings
from backend.core.wiring import open_resources
from listener.sync import ChainSync, DeepReorg


async def run(settings: Settings, stop: asyncio.Event) -> None:
    async with open_resources(settings) as res:
        sync = ChainSync(
            res.sessions,
            res.w3,
            settings.chain_id,
            settings.contract_address,
            confirmations=settings.confirmations,
            max_range=settings.listener_batch_blocks,
        )
        async with res.engine.connect() as leader:
            # Session-level lock on a connection held for the process's life: if this process
            # dies, Postgres drops the connection and a standby takes over.
            while not stop.is_set():
                got = await leader.scalar(
                    text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_LISTENER_LEADER}
                )
                await leader.commit()
                if got:
                    break
                log.info("listener standby: another copy is active")
                await _sleep(stop, 5)
            log.info("listener active", contract=settings.contract_address)
            while not stop.is_set():
                try:
                    settled = await sync.sync_once()
                    if settled:
                        log.info("listener synced", events=settled)
                except DeepReorg:
                    log.exception("listener halted")
                    raise
                except Exception:
                    log.exception("listener sync failed; retrying")
                await _sleep(stop, settings.listener_poll_seconds)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


def main() -> None:
    settings = get_settings()
    configure_logging(json=settings.log_json)
    stop = asyncio.Event()

    async def _main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run(settings, stop)

    asyncio.run(_main())


if __name__ == "__main__":
    main()
