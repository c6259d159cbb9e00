"""Apply confirmed payout events: a reward is marked paid only when the chain says so."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.models import ChainEvent, PayoutBatch, PayoutLine
from backend.plan.errors import InconsistentState
from backend.rewards.ledger import BalanceDeltas, flip_user_rewards
from backend.users import repository as users


async def _line(session: AsyncSession, batch_id: int, recipient: str) -> PayoutLine:
    line = await session.scalar(
        select(PayoutLine)
        .where(PayoutLine.batch_id == batch_id, PayoutLine.recipient == recipient)
        .with_for_update()
    )
    if line is None:
        raise InconsistentState(f"batch {batch_id} has no line for {recipient}")
    return line


async def on_payout(session: AsyncSession, event: ChainEvent, *, deferred: bool) -> None:
    """`PayoutExecuted` (paid) or `PayoutDeferred` (claimable) for one recipient of a batch."""
    a = event.args
    batch_id, amount = int(a["batchId"]), int(a["amount"])
    line = await _line(session, batch_id, a["recipient"])
    if int(line.amount) != amount:
        raise InconsistentState(
            f"batch {batch_id} line {a['recipient']}: {line.amount} != {amount}"
        )
    line.status = "deferred" if deferred else "paid"
    deltas = BalanceDeltas()
    moved = await flip_user_rewards(
        session,
        line.user_id,
        "batched",
        "claimable" if deferred else "paid",
        deltas,
        batch_id=batch_id,
        only_batch=True,
    )
    if moved != amount:
        raise InconsistentState(f"batch {batch_id}: {moved} wei batched for {a['recipient']}")
    await deltas.apply(session)


async def on_batch_executed(session: AsyncSession, event: ChainEvent) -> None:
    a = event.args
    batch = await session.get(PayoutBatch, int(a["batchId"]), with_for_update=True)
    if batch is None:
        raise InconsistentState(f"unknown batch {a['batchId']} executed on chain")
    batch.status, batch.executed_block = "executed", event.block_number
    batch.tx_hash = event.tx_hash
    batch.paid_total, batch.deferred_total = int(a["paidTotal"]), int(a["deferredTotal"])


async def on_claimed(session: AsyncSession, event: ChainEvent) -> None:
    a = event.args
    user = await users.by_wallet(session, a["account"])
    if user is None:
        raise InconsistentState(f"claim by unknown account {a['account']}")
    deltas = BalanceDeltas()
    moved = await flip_user_rewards(session, user.id, "claimable", "paid", deltas)
    if moved != int(a["amount"]):
        raise InconsistentState(f"{a['account']} claimed {a['amount']} wei, ledger had {moved}")
    await deltas.apply(session)
