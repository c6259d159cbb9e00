"""Apply final payout events: a reward is marked paid only when the chain says so."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from backend.models import ChainEvent, RewardStatus
from backend.payouts import service as payouts
from backend.plan.errors import InconsistentState
from backend.rewards.service import BalanceDeltas, flip_user_rewards
from backend.users import service as users


async def payout_executed(session: AsyncSession, event: ChainEvent) -> None:
    a = event.args
    await payouts.record_payout(
        session, int(a["batchId"]), a["recipient"], int(a["amount"]), deferred=False
    )


async def payout_deferred(session: AsyncSession, event: ChainEvent) -> None:
    a = event.args
    await payouts.record_payout(
        session, int(a["batchId"]), a["recipient"], int(a["amount"]), deferred=True
    )


async def batch_executed(session: AsyncSession, event: ChainEvent) -> None:
    a = event.args
    await payouts.record_batch_executed(
        session,
        int(a["batchId"]),
        block_number=event.block_number,
        tx_hash=event.tx_hash,
        paid_total=int(a["paidTotal"]),
        deferred_total=int(a["deferredTotal"]),
    )


async def claimed(session: AsyncSession, event: ChainEvent) -> None:
    """A participant pulled its deferred payouts (`claim` or `claimTo`, both emit `Claimed`)."""
    a = event.args
    user = await users.by_wallet(session, a["account"])
    if user is None:
        raise InconsistentState(f"claim by unknown account {a['account']}")
    deltas = BalanceDeltas()
    moved = await flip_user_rewards(
        session, user.id, RewardStatus.CLAIMABLE, RewardStatus.PAID, deltas
    )
    if moved != int(a["amount"]):
        raise InconsistentState(f"{a['account']} claimed {a['amount']} wei, ledger had {moved}")
    await deltas.apply(session)
