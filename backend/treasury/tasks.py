"""Dramatiq actors of the treasury (run by the settlement worker: `autopool worker`)."""

from __future__ import annotations

import dramatiq

import backend.core.broker  # noqa: F401 - sets the Redis broker before actors are declared
from backend.core.db import unit_of_work
from backend.core.wiring import worker_resources
from backend.treasury import service


@dramatiq.actor(queue_name="settlement", max_retries=3, min_backoff=5_000)
async def reconcile_ledger() -> None:
    """The scheduled reconciliation: stored, served by GET /monitoring/reconciliation."""
    res = await worker_resources()
    async with unit_of_work(res.sessions) as session:
        await service.reconcile(session, res.w3, res.settings.contract_address)
