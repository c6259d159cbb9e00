"""The Dramatiq broker (Redis), imported before any actor module declares its actors.

Actors are `async def`: Dramatiq's AsyncIO middleware runs one event loop per worker process,
so a worker builds its resources once (`backend.core.wiring.worker_resources`) and closes them
when it shuts down.
"""

from __future__ import annotations

import asyncio
from typing import Any

import dramatiq
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AsyncIO, Middleware

from backend.core.settings import get_settings
from backend.core.wiring import close_worker_resources


class WorkerResources(Middleware):  # type: ignore[misc]
    """Closes the worker's resources (engine, signer client) on its own loop at shutdown."""

    def before_worker_shutdown(self, broker: Any, worker: Any) -> None:
        thread = get_event_loop_thread()
        if thread is not None and thread.loop.is_running():
            future = asyncio.run_coroutine_threadsafe(close_worker_resources(), thread.loop)
            future.result(timeout=10)


broker = RedisBroker(url=get_settings().redis_url)  # type: ignore[no-untyped-call]
broker.add_middleware(AsyncIO())
broker.add_middleware(WorkerResources())
dramatiq.set_broker(broker)
