"""Dramatiq actors of the settlement worker (DESIGN §3; docs/settlement.md).

Start it with `autopool worker` (the Dramatiq worker plus its schedule), or the worker alone
with `dramatiq backend.payouts.tasks` and any scheduler that sends `settlement_cycle`.

Actors are async and share the worker process's resources (one database engine and one signer
client per process, built on the first message): see backend.core.broker. Every actor is safe
to run twice, concurrently or after a crash: the state is in PostgreSQL, builds take an
advisory lock, signing is idempotent per batch and one sender loop runs per account.
"""

from __future__ import annotations

import dramatiq

import backend.core.broker  # noqa: F401 - sets the Redis broker before actors are declared
from backend.chain.signer_client import SignerRefused
from backend.core.db import unit_of_work
from backend.core.logging import log
from backend.core.wiring import worker_resources
from backend.payouts import service
from backend.payouts.errors import BatchWrongState

QUEUE = service.SETTLEMENT_QUEUE


# A refusal by the signer's policy is final for this run: retrying would be refused again.
@dramatiq.actor(queue_name=QUEUE, max_retries=5, min_backoff=2_000, throws=(SignerRefused,))
async def settlement_cycle() -> None:
    """The scheduled cycle: expire, build (caps from the settings), sign, send, track, bump."""
    result = await service.run_cycle(await worker_resources(), progress=log.info)
    report = result.sender
    log.info(
        "settlement cycle",
        built=result.built,
        signed=result.signed,
        expired=result.expired,
        submitted=report.submitted if report else [],
        bumped=report.bumped if report else [],
        halted=report.halted if report else None,
        blocked=report.blocked if report else None,
    )


@dramatiq.actor(queue_name=QUEUE, max_retries=5, min_backoff=2_000, throws=(SignerRefused,))
async def settle_pending() -> None:
    """The cycle under its older name (kept for messages already queued)."""
    await service.run_cycle(await worker_resources(), progress=log.info)


@dramatiq.actor(queue_name=QUEUE, max_retries=5, min_backoff=2_000)
async def build_batches(created_by: str = "worker", only_user: int = 0) -> None:
    """Build batches now (an admin's request, or one participant's withdrawal when
    `only_user` is set), then sign and send them."""
    res = await worker_resources()
    await service.build_batches(
        res,
        created_by=created_by,
        limit=res.settings.settlement_max_batches_per_cycle,
        only_users=[only_user] if only_user else None,
    )
    sign_batch.send(0)


@dramatiq.actor(queue_name=QUEUE, max_retries=5, min_backoff=2_000, throws=(SignerRefused,))
async def sign_batch(batch_id: int) -> None:
    """Sign one built batch (0: every built batch), then nudge the sender."""
    res = await worker_resources()
    if batch_id:
        try:
            async with unit_of_work(res.sessions) as session:
                await service.sign_batch(session, res.signer, batch_id)
        except BatchWrongState as exc:
            log.info("sign skipped", batch=batch_id, reason=exc.detail)
    else:
        await service.sign_built(res)
    send_batches.send()


@dramatiq.actor(queue_name=QUEUE, max_retries=10, min_backoff=1_000)
async def send_batches() -> None:
    """Run the sender: reconcile nonces, settle receipts, submit signed batches, bump fees."""
    report = await service.send_signed(await worker_resources())
    log.info(
        "sender run",
        submitted=report.submitted,
        bumped=report.bumped,
        mined=report.mined,
        reverted=report.reverted,
        halted=report.halted,
        blocked=report.blocked,
        busy=report.busy,
    )
