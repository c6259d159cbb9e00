"""The reward ledger: lines are written and moved between statuses only here, and
`user_balances` is kept equal to the per-status sums of the rewards table in the same
transaction (the rewards table is the source of truth; balances are its O(1) summary).
Callers own the transaction."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from backend.models import Reward, RewardStatus, UserBalance
from backend.plan.types import RewardKind, RewardLine
from backend.rewards import repository as repo

BALANCE_COLUMNS = tuple(str(s) for s in RewardStatus)


class BalanceDeltas:
    """Per-user, per-status wei deltas, applied as one UPDATE per user."""

    def __init__(self) -> None:
        self._d: defaultdict[int, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))

    def add(self, user_id: int, status: str, amount: int) -> None:
        self._d[user_id][status] += amount

    def move(self, user_id: int, src: str, dst: str, amount: int) -> None:
        self._d[user_id][src] -= amount
        self._d[user_id][dst] += amount

    def totals(self) -> dict[int, dict[str, int]]:
        """The net delta per participant and status not yet applied (non-zero ones)."""
        return {u: {c: v for c, v in d.items() if v} for u, d in self._d.items()}

    async def apply(self, session: AsyncSession) -> None:
        for user_id in sorted(self._d):  # fixed order: no deadlocks between writers
            changed = {
                col: delta
                for col, delta in self._d[user_id].items()
                if delta and col in BALANCE_COLUMNS
            }
            if changed:
                await repo.add_to_balance(session, user_id, changed)
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
        await repo.insert_lines(session, rows)


SURPLUS_SOURCE = "surplus"


async def credit_surplus(
    session: AsyncSession, credit_id: int, company_id: int, amount: int, plan_hash: str
) -> None:
    """Write a surplus credit's one line: `amount` pending to the company (kind COMPANY,
    reason and source `surplus`), its balance moved in the same transaction."""
    await repo.insert_lines(
        session,
        [
            {
                "chain_event_id": None,
                "surplus_credit_id": credit_id,
                "line_no": 0,
                "user_id": company_id,
                "amount": amount,
                "kind": str(RewardKind.COMPANY),
                "status": str(RewardStatus.PENDING),
                "level": None,
                "earner_slot": None,
                "generation": None,
                "reason": SURPLUS_SOURCE,
                "source": SURPLUS_SOURCE,
                "plan_hash": plan_hash,
            }
        ],
    )
    deltas = BalanceDeltas()
    deltas.add(company_id, RewardStatus.PENDING, amount)
    await deltas.apply(session)


async def flip_node_reserve(
    session: AsyncSession, level: int, slot: int, to_status: str, deltas: BalanceDeltas
) -> int:
    """Move every reserved row earned at node (level, slot) to `to_status`; returns their sum."""
    total = 0
    for user_id, amount in await repo.flip_node_reserve(session, level, slot, to_status):
        deltas.move(user_id, RewardStatus.RESERVED, to_status, amount)
        total += amount
    return total


async def flip_user_rewards(
    session: AsyncSession,
    user_id: int,
    from_status: str,
    to_status: str,
    deltas: BalanceDeltas,
    *,
    batch_id: int | None = None,
) -> int:
    """Move a user's rewards in `from_status` (of `batch_id` when given) to `to_status`."""
    total = await repo.flip_user(session, user_id, from_status, to_status, batch_id)
    if total:
        deltas.move(user_id, from_status, to_status, total)
    return total


async def batch_pending(
    session: AsyncSession, user_ids: Iterable[int], batch_id: int
) -> dict[int, int]:
    """Batch the pending rewards of `user_ids` under `batch_id`: user -> wei batched. Balances
    are moved pending -> batched in the same transaction."""
    sums: dict[int, int] = {}
    for user_id, amount in await repo.batch_pending(session, user_ids, batch_id):
        sums[user_id] = sums.get(user_id, 0) + amount
    deltas = BalanceDeltas()
    for user_id, amount in sums.items():
        deltas.move(user_id, RewardStatus.PENDING, RewardStatus.BATCHED, amount)
    await deltas.apply(session)
    return sums


async def liabilities(session: AsyncSession) -> dict[str, int]:
    """What the pool owes, by status (every liability status present, 0 if none)."""
    owed = await repo.sums_by_status(session, RewardStatus.liabilities())
    return {str(s): owed.get(str(s), 0) for s in RewardStatus.liabilities()}


async def balance(session: AsyncSession, user_id: int) -> UserBalance | None:
    """The participant's balances by status (the rewards table's per-status sums)."""
    return await repo.balance_of(session, user_id)


async def by_type(session: AsyncSession, user_id: int) -> dict[str, dict[str, int]]:
    """Wei by reward type, then status."""
    return await repo.sums_by_kind_and_status(session, user_id)


async def history(
    session: AsyncSession,
    user_id: int,
    *,
    cursor: int | None,
    limit: int,
    status: str | None = None,
    kind: str | None = None,
) -> list[Reward]:
    return await repo.history(
        session, user_id, before_id=cursor, limit=limit, status=status, kind=kind
    )


async def page(
    session: AsyncSession,
    *,
    cursor: int | None,
    limit: int,
    user_id: int | None = None,
    kind: str | None = None,
    status: str = RewardStatus.PENDING,
    created_before: datetime | None = None,
    min_amount: int | None = None,
) -> list[Reward]:
    """Reward lines by status with filters (the payout console's view), newest first."""
    return await repo.pending_page(
        session,
        before_id=cursor,
        limit=limit,
        user_id=user_id,
        kind=kind,
        status=status,
        max_created_at=created_before,
        min_amount=min_amount,
    )


async def release_held(session: AsyncSession, user_id: int) -> int:
    """An unfrozen participant's held rewards become pending; returns the wei moved."""
    deltas = BalanceDeltas()
    moved = await flip_user_rewards(
        session, user_id, RewardStatus.HELD, RewardStatus.PENDING, deltas
    )
    await deltas.apply(session)
    return moved


async def lines_of_event(session: AsyncSession, chain_event_id: int) -> dict[int, dict[str, int]]:
    """Recipient -> status -> wei of the lines one chain event wrote."""
    out: dict[int, dict[str, int]] = {}
    for user_id, status, amount in await repo.lines_of_event(session, chain_event_id):
        out.setdefault(user_id, {})[status] = amount
    return out
