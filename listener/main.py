"""`autopool-listener`: one active copy (a Postgres advisory lock elects it; a standby waits)."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from sqlalchemy import text

from backend.core.db import LOCK_LISTENER_LEADER, unit_of_work
from backend.core.logging import configure_logging, log
from backend.core.settings import Settings, get_settings
from backend.core.wiring import open_resources
from listener.sync import ChainSync, DeepReorg, Halted, LostLeadership


async def take_generation(sync: ChainSync) -> int:
    """Bump the cursor's fencing generation: from now on only this listener may commit."""
    async with unit_of_work(sync.sessions) as session:
        cursor = await sync.cursor_row(session)
        cursor.leader_generation += 1
        return cursor.leader_generation


async def run(settings: Settings, stop: asyncio.Event) -> None:
    async with open_resources(settings) as res:
        sync = ChainSync(
            res.sessions,
            res.w3,
            settings.chain_id,
            settings.contract_address,
            confirmations=settings.confirmations,
            max_range=settings.listener_batch_blocks,
            finality=settings.listener_finality,
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
                await _sleep(stop, settings.listener_standby_poll_seconds)
            sync.generation = await take_generation(sync)
            log.info(
                "listener active", contract=settings.contract_address, generation=sync.generation
            )
            while not stop.is_set():
                try:
                    settled = await sync.sync_once()
                    if settled:
                        log.info("listener synced", events=settled)
                except (DeepReorg, Halted):
                    # Halted on the cursor: nothing is written; poll until an operator resumes.
                    await _sleep(stop, max(5.0, settings.listener_poll_seconds))
                    continue
                except LostLeadership:
                    log.error("listener lost leadership to a newer generation; exiting")
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
