"""Dramatiq actors of the payouts domain (run by `dramatiq backend.payouts.tasks`).

Actors are async and share the worker process's resources (one database engine and one signer
client per process, built on the first message): see backend.core.broker.
"""

from __future__ import annotations

import dramatiq

import backend.core.broker  # noqa: F401 - sets the Redis broker before actors are declared
from backend.chain.signer_client import SignerRefused
from backend.core.logging import log
from backend.core.wiring import worker_resources
from backend.payouts import service


# A refusal by the signer's policy is final for this run: retrying would be refused again.
@dramatiq.actor(queue_name="settlement", max_retries=5, min_backoff=2_000, throws=(SignerRefused,))
async def settle_pending() -> None:
    """Batch, sign and submit pending rewards. Safe to run concurrently and to retry: the
    build takes an advisory lock and an unfinished batch is resumed, never rebuilt."""
    result = await service.settle_once(await worker_resources(), progress=log.info)
    log.info(
        "settlement run",
        batch=result.batch_id,
        recipients=result.recipients,
        total=str(result.total),
        tx=result.tx_hash,
    )
