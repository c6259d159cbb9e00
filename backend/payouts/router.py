"""HTTP routes of payout batches (DESIGN §3): operators build, sign, submit and retry;
auditors read. Every state change is audited in its own transaction."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from backend.audit import service as audit
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


@router.post("/{batch_id}/sign", response_model=BatchOut)
async def sign_batch(
    batch_id: BatchId, session: Session, res: ResourcesDep, operator: Operator
) -> BatchOut:
    """Have the signer sign a built batch (409 `batch-wrong-state` from any other state)."""
    before = (await service.get_batch(session, batch_id))[0].status
    batch = await service.sign_batch(session, res.signer, batch_id)
    await audit.record(
        session,
        actor=operator.wallet,
        action="payout.sign",
        target=f"batch:{batch_id}",
        before={"status": before},
        after={"status": batch.status, "digest": batch.digest},
    )
    return _out(batch)


@router.post("/{batch_id}/submit", response_model=BatchOut)
async def submit_batch(
    batch_id: BatchId, session: Session, res: ResourcesDep, operator: Operator
) -> BatchOut:
    """Send a signed batch to the chain from the settlement sender."""
    before = (await service.get_batch(session, batch_id))[0].status
    batch = await service.submit_batch(
        session,
        res.w3,
        res.abi,
        res.settings.settlement_sender_key.get_secret_value(),
        batch_id,
    )
    await audit.record(
        session,
        actor=operator.wallet,
        action="payout.submit",
        target=f"batch:{batch_id}",
        before={"status": before},
        after={"status": batch.status, "txHash": batch.tx_hash},
    )
    return _out(batch)


@router.post("/{batch_id}/retry", response_model=BatchOut)
async def retry_batch(
    batch_id: BatchId, session: Session, res: ResourcesDep, operator: Operator
) -> BatchOut:
    """Send a submitted batch again: the same signed batch, the same account nonce."""
    before = (await service.get_batch(session, batch_id))[0].status
    batch = await service.submit_batch(
        session,
        res.w3,
        res.abi,
        res.settings.settlement_sender_key.get_secret_value(),
        batch_id,
    )
    await audit.record(
        session,
        actor=operator.wallet,
        action="payout.retry",
        target=f"batch:{batch_id}",
        before={"status": before},
        after={"status": batch.status, "txHash": batch.tx_hash, "attempts": batch.attempts},
    )
    return _out(batch)
