"""Writes reward lines and status changes, keeping `user_balances` equal to the sums of the
rewards table in the same transaction. Callers own the transaction."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from sqlalchemy import insert, literal, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.models import Reward, UserBalance
from backend.models.base import Wei
from backend.plan.types import RewardLine

BALANCE_COLUMNS = ("pending", "held", "reserved", "batched", "claimable", "paid", "reinvested")


class BalanceDeltas:
    """Per-user, per-status wei deltas, applied as one UPDATE per user."""

    def __init__(self) -> None:
        self._d: defaultdict[int, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))

    def add(self, user_id: int, status: str, amount: int) -> None:
        self._d[user_id][status] += amount

    def move(self, user_id: int, src: str, dst: str, amount: int) -> None:
        self._d[user_id][src] -= amount
        self._d[user_id][dst] += amount

    async def apply(self, session: AsyncSession) -> None:
        for user_id in sorted(self._d):  # fixed order: no deadlocks between writers
            values = {
                # An explicit NUMERIC bind: asyncpg would otherwise send the delta as int64.
                col: getattr(UserBalance, col) + literal(delta, Wei)
                for col, delta in self._d[user_id].items()
                if delta and col in BALANCE_COLUMNS
            }
            if values:
                await session.execute(
                    update(UserBalance).where(UserBalance.user_id == user_id).values(**values)
                )
        self._d.clear()


class LineWriter:
    """Numbers the reward lines of one chain event (`line_no`), so the unique key
    (chain_event_id, line_no) makes a second settlement of the event impossible."""

    def __init__(self, chain_event_id: int, plan_hash: str, deltas: BalanceDeltas) -> None:
        self.chain_event_id = chain_event_id
        self.plan_hash = plan_hash
        self.deltas = deltas
        self.next_no = 0
        self.total = 0  # Σ lines written
        self.reinvested = 0  # Σ reserved rows consumed to fund progressions

    async def write(self, session: AsyncSession, lines: Sequence[RewardLine], source: str) -> None:
        if not lines:
            return
        rows = []
        for line in lines:
            rows.append(
                {
                    "chain_event_id": self.chain_event_id,
                    "line_no": self.next_no,
                    "user_id": line.recipient_id,
                    "amount": line.amount,
                    "kind": str(line.kind),
                    "status": str(line.status),
                    "level": line.level,
                    "earner_slot": line.earner_slot,
                    "generation": line.generation,
                    "reason": str(line.reason) if line.reason else None,
                    "source": source,
                    "plan_hash": self.plan_hash,
                }
            )
            self.next_no += 1
            self.total += line.amount
            self.deltas.add(line.recipient_id, str(line.status), line.amount)
        await session.execute(insert(Reward), rows)


async def flip_node_reserve(
    session: AsyncSession, level: int, slot: int, to_status: str, deltas: BalanceDeltas
) -> int:
    """Move every reserved row earned at node (level, slot) to `to_status`; returns their sum."""
    result = await session.execute(
        update(Reward)
        .where(Reward.level == level, Reward.earner_slot == slot, Reward.status == "reserved")
        .values(status=to_status)
        .returning(Reward.user_id, Reward.amount)
    )
    total = 0
    for user_id, amount in result.all():
        deltas.move(user_id, "reserved", to_status, int(amount))
        total += int(amount)
    return total


async def flip_user_rewards(
    session: AsyncSession,
    user_id: int,
    from_status: str,
    to_status: str,
    deltas: BalanceDeltas,
    *,
    batch_id: int | None = None,
    only_batch: bool = False,
) -> int:
    """Move a user's rewards in `from_status` (of `batch_id` if `only_batch`) to `to_status`."""
    conditions = [Reward.user_id == user_id, Reward.status == from_status]
    if only_batch:
        conditions.append(Reward.batch_id == batch_id)
    result = await session.execute(
        update(Reward).where(*conditions).values(status=to_status).returning(Reward.amount)
    )
    total = sum(int(a) for (a,) in result.all())
    if total:
        deltas.move(user_id, from_status, to_status, total)
    return total


def total(lines: Iterable[RewardLine]) -> int:
    return sum(line.amount for line in lines)
