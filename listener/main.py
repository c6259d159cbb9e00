"""`autopool-listener`: one active copy (a Postgres advisory lock elects it; a standby waits)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal

from sqlalchemy import text
from web3 import AsyncWeb3, WebSocketProvider

from backend.core.db import LOCK_LISTENER_LEADER, unit_of_work
from backend.core.logging import configure_logging, log
from backend.core.settings import Settings, get_settings
from backend.core.wiring import open_resources
from listener.sync import ChainSync, DeepReorg, Halted, LostLeadership


def freeze_startup_heap() -> None:
    """Put what start-up allocated (modules, ABI tables, the engine's pools: long-lived, never
    garbage) out of the cyclic collector's reach, so a full collection scans only what the
    listener allocated since: ~0.1 s less per 2,000-block backfill range (docs/benchmarks.md)."""
    gc.freeze()


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
            bulk_min_events=settings.listener_bulk_min_events,
        )
        freeze_startup_heap()
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
            wake = asyncio.Event()
            heads = (
                asyncio.create_task(watch_heads(settings.listener_ws_url, wake, stop))
                if settings.listener_ws_url
                else None
            )
            try:
                await _sync_loop(sync, settings, stop, wake)
            finally:
                if heads is not None:
                    heads.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await heads


async def _sync_loop(
    sync: ChainSync, settings: Settings, stop: asyncio.Event, wake: asyncio.Event
) -> None:
    while not stop.is_set():
        wake.clear()
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
        await _sleep(stop, settings.listener_poll_seconds, wake)


async def watch_heads(url: str, wake: asyncio.Event, stop: asyncio.Event) -> None:
    """Set `wake` on every new head (`eth_subscribe` `newHeads` over WebSocket). A lost
    subscription is reopened with backoff; meanwhile the loop polls as usual."""
    backoff = 1.0
    while not stop.is_set():
        try:
            async with AsyncWeb3(WebSocketProvider(url)) as w3:
                await w3.eth.subscribe("newHeads")
                log.info("listener subscribed to newHeads", url=url)
                backoff = 1.0
                async for _ in w3.socket.process_subscriptions():
                    wake.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any transport failure: poll meanwhile, then reconnect
            log.warning("newHeads subscription lost; polling meanwhile", error=str(exc))
        await _sleep(stop, backoff)
        backoff = min(backoff * 2, 30.0)


async def _sleep(stop: asyncio.Event, seconds: float, wake: asyncio.Event | None = None) -> None:
    """Sleep `seconds`, or less if `stop` (or `wake`) is set meanwhile."""
    waits = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waits.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


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
