"""HTTP routes of payout batches (DESIGN §3): operators build, sign, submit and retry;
auditors read. Every state change is audited in its own transaction."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from backend.audit import service as audit
from backend.core.db import after_commit
from backend.core.deps import Operator, Reader, ResourcesDep, Session
from backend.core.types import NAME_PATTERN
from backend.models import PayoutBatch, PayoutLine
from backend.payouts import service
from backend.payouts.schemas import BatchOut, BatchPage, BuildBatchIn, PayoutLineOut

router = APIRouter(prefix="/payouts", tags=["payouts"])

BatchId = Annotated[int, Path(ge=1, le=2**62)]


def _out(batch: PayoutBatch, lines: list[PayoutLine] | None = None) -> BatchOut:
    return BatchOut(
        id=batch.id,
        status=batch.status,
        total=int(batch.total),
        recipientCount=batch.recipient_count,
        nonce=int(batch.nonce),
        deadline=batch.deadline,
        txHash=batch.tx_hash,
        attempts=batch.attempts,
        createdBy=batch.created_by,
        createdAt=batch.created_at,
        lines=None
        if lines is None
        else [
            PayoutLineOut(recipient=ln.recipient, amount=int(ln.amount), status=ln.status)
            for ln in lines
        ],
    )


@router.get("", response_model=BatchPage)
async def list_batches(
    session: Session,
    _: Reader,
    status: Annotated[str | None, Query(max_length=16, pattern=NAME_PATTERN)] = None,
    cursor: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> BatchPage:
    """Payout batches, newest first; `cursor` is the last id of the previous page."""
    rows = await service.batches(session, cursor, limit, status)
    return BatchPage(
        items=[_out(b) for b in rows], nextCursor=rows[-1].id if len(rows) == limit else None
    )


@router.get("/{batch_id}", response_model=BatchOut)
async def get_batch(batch_id: BatchId, session: Session, _: Reader) -> BatchOut:
    batch, lines = await service.get_batch(session, batch_id)
    return _out(batch, lines)


@router.post("/build-batch", response_model=BatchOut, status_code=201)
async def build_batch(
    body: BuildBatchIn, session: Session, res: ResourcesDep, operator: Operator
) -> BatchOut:
    """Batch pending rewards of unfrozen participants, oldest first, one line per recipient."""
    batch = await service.build_batch(
        session,
        max_recipients=body.maxRecipients or res.settings.max_batch_recipients,
        deadline_seconds=res.settings.batch_deadline_seconds,
        created_by=operator.wallet,
    )
    await audit.record(
        session,
        actor=operator.wallet,
        action="payout.build",
        target=f"batch:{batch.id}",
        before=None,
        after={
            "status": batch.status,
            "total": str(batch.total),
            "recipients": batch.recipient_count,
        },
    )
    batch, lines = await service.get_batch(session, batch.id)
    return _out(batch, lines)


def _nudge(session: Session, res: ResourcesDep, actor: str, *args: int) -> None:
    """Enqueue `actor` for the settlement worker once this request's transaction commits."""
    url = res.settings.redis_url
    after_commit(session, lambda: service.enqueue(url, actor, *args))


@router.post("/{batch_id}/sign", response_model=BatchOut, status_code=202)
async def sign_batch(
    batch_id: BatchId, session: Session, res: ResourcesDep, operator: Operator
) -> BatchOut:
    """Ask the settlement worker to sign a built batch (202 with the batch as it is now; a
    signed batch is accepted again and left as it is; 409 `batch-wrong-state` otherwise)."""
    batch = await service.check_signable(session, batch_id)
    await audit.record(
        session,
        actor=operator.wallet,
        action="payout.sign",
        target=f"batch:{batch_id}",
        before={"status": batch.status},
        after={"status": batch.status, "enqueued": "sign_batch"},
    )
    _nudge(session, res, "sign_batch", batch_id)
    return _out(batch)


@router.post("/{batch_id}/submit", response_model=BatchOut, status_code=202)
async def submit_batch(
    batch_id: BatchId, session: Session, res: ResourcesDep, operator: Operator
) -> BatchOut:
    """Ask the settlement worker to send a signed batch (202 with the batch as it is now). The
    sender stores the attempt before broadcasting it and tracks it to its receipt."""
    batch = await service.check_submittable(session, batch_id)
    await audit.record(
        session,
        actor=operator.wallet,
        action="payout.submit",
        target=f"batch:{batch_id}",
        before={"status": batch.status},
        after={"status": batch.status, "enqueued": "send_batches"},
    )
    _nudge(session, res, "send_batches")
    return _out(batch)


@router.post("/{batch_id}/retry", response_model=BatchOut, status_code=202)
async def retry_batch(
    batch_id: BatchId, session: Session, res: ResourcesDep, operator: Operator
) -> BatchOut:
    """Ask the worker to push a submitted batch again: the same signed batch with the same
    account nonce, re-sent or replaced at a higher fee, never a second nonce."""
    batch = await service.check_submittable(session, batch_id)
    await audit.record(
        session,
        actor=operator.wallet,
        action="payout.retry",
        target=f"batch:{batch_id}",
        before={"status": batch.status},
        after={"status": batch.status, "attempts": batch.attempts, "enqueued": "send_batches"},
    )
    _nudge(session, res, "send_batches")
    return _out(batch)
