"""The level trees: level-1 slot leases (DESIGN §3) and the nodes placements create.

**The lease rule** (the same as `backend.plan.slots.lowest_leasable_slot`, proved equal by
tests/pool/test_lease_rule.py): a registration leases the lowest level-1 slot that is not
confirmed, not under a live lease, and whose parent is confirmed. Every slot below the pool's
high-water mark (`Pool.next_slot`) has a lease row, so the holes (lapsed leases, and slots
passed over while their parent was unconfirmed) are an indexed lookup; above the mark the
first slot whose parent is confirmed is taken and the ones passed over become free rows.
Leasing is serialized by one advisory lock, held only while the slot is chosen and written.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.db import LOCK_LEVEL1_LEASES, advisory_xact_lock
from backend.core.errors import SLOT_RETRY_SECONDS
from backend.models import (
    LeaseStatus,
    Placement,
    PlacementSource,
    PlacementStatus,
    PoolNode,
    SlotLease,
)
from backend.plan.engine import parent_slot
from backend.plan.errors import InconsistentState
from backend.pool import repository as repo
from backend.pool.errors import ParentEmpty, SlotTaken, SlotUnavailable

# How many slots above the high-water mark one query checks for a confirmed parent.


@dataclass(frozen=True)
class LeaseTaken:
    slot: int
    lapsed_payload_id: int | None
    """The payload of the lapsed lease this slot was taken from: it can never execute now."""


async def lock_leases(session: AsyncSession) -> None:
    """Serialize with every other lease or confirmation of a level-1 slot (until commit)."""
    await advisory_xact_lock(session, LOCK_LEVEL1_LEASES)


async def lease_slot(
    session: AsyncSession,
    *,
    now: int,
    user_id: int,
    referrer_id: int,
    transaction_id: int,
    deadline: int,
) -> LeaseTaken:
    """Lease the lowest leasable level-1 slot to `user_id` until `deadline`: the lowest hole
    (a free slot, or a lapsed lease's) whose parent is confirmed, else the lowest slot at the
    high-water mark whose parent is confirmed (the ones passed over become holes). `now` is the
    timestamp of the newest confirmed block. The caller holds `lock_leases`. The rule runs in
    PostgreSQL (`autopool_lease_level1`, migration 0012), one statement inside the lock."""
    outcome, slot, lapsed, first = await repo.lease_level1(
        session,
        now=now,
        user_id=user_id,
        referrer_id=referrer_id,
        transaction_id=transaction_id,
        deadline=deadline,
    )
    return lease_taken(outcome, slot, lapsed, first)


def lease_taken(
    outcome: str, slot: int | None, lapsed: int | None, first: int | None
) -> LeaseTaken:
    """The lease function's outcome as a `LeaseTaken`, or the refusal it means."""
    if outcome == "no-pool":
        raise SlotUnavailable("the pool is not initialised (no company root)")
    if outcome == "waiting":
        raise SlotUnavailable(
            f"every free level-1 slot waits for its parent to be confirmed (from slot {first})",
            retry_after=SLOT_RETRY_SECONDS,
        )
    if outcome != "leased" or slot is None:
        raise InconsistentState(f"lease function answered {outcome!r}")
    return LeaseTaken(slot, lapsed)


async def live_lease(session: AsyncSession, user_id: int) -> SlotLease | None:
    """The user's lease that is not confirmed nor freed yet (live, or lapsed but not reused)."""
    return await repo.live_lease_of_user(session, user_id)


async def free_lease(session: AsyncSession, lease: SlotLease) -> None:
    """A lapsed lease's slot becomes a hole (the next to fill); its placement expires."""
    if lease.transaction_id is not None:
        await repo.expire_placement_of_payload(session, lease.transaction_id)
    lease.status, lease.user_id, lease.referrer_id = LeaseStatus.FREE, None, None
    lease.transaction_id, lease.deadline = None, 0


async def expire_placement(session: AsyncSession, transaction_id: int) -> None:
    await repo.expire_placement_of_payload(session, transaction_id)


async def add_pending_placement(
    session: AsyncSession,
    *,
    user_id: int,
    slot: int,
    amount: int,
    plan_hash: str,
    transaction_id: int,
) -> None:
    session.add(
        Placement(
            user_id=user_id,
            level=1,
            slot=slot,
            amount=amount,
            source=PlacementSource.REGISTRATION,
            status=PlacementStatus.PENDING,
            plan_hash=plan_hash,
            transaction_id=transaction_id,
        )
    )


async def confirm_lease(session: AsyncSession, slot: int, user_id: int, referrer_id: int) -> None:
    """A registration for level-1 `slot` is final: the slot is the user's for good. Works from
    the event alone (a ledger rebuilt from chain data has no leases): a missing row is created,
    and slots skipped below it become holes. The caller holds `lock_leases`."""
    lease = await repo.lease_of_slot(session, 1, slot)
    if lease is not None and lease.status == LeaseStatus.CONFIRMED:
        raise InconsistentState(f"level-1 slot {slot} confirmed twice")
    pool = await repo.pool_for_update(session, 1)
    if pool is None:
        raise InconsistentState("level 1 has no pool: run the seed first")
    if lease is None:
        repo.add_free_slots(session, 1, range(pool.next_slot, slot))
        repo.add_lease(
            session, 1, slot, LeaseStatus.CONFIRMED, user_id=user_id, referrer_id=referrer_id
        )
    else:
        lease.status, lease.user_id, lease.referrer_id = LeaseStatus.CONFIRMED, user_id, referrer_id
    pool.next_slot = max(pool.next_slot, slot + 1)


async def confirm_placement(
    session: AsyncSession,
    *,
    transaction_id: int | None,
    user_id: int,
    slot: int,
    amount: int,
    plan_hash: str,
    chain_event_id: int,
) -> None:
    """Fix the level-1 placement of a final registration (the leased one, or a new row)."""
    placement = (
        await repo.placement_of_payload(session, transaction_id)
        if transaction_id is not None
        else None
    )
    if placement is None:
        placement = Placement(
            user_id=user_id,
            level=1,
            source=PlacementSource.REGISTRATION,
            plan_hash=plan_hash,
            transaction_id=transaction_id,
        )
        session.add(placement)
    placement.status, placement.chain_event_id = PlacementStatus.CONFIRMED, chain_event_id
    placement.slot, placement.amount = slot, amount


async def nodes_at(
    session: AsyncSession, level: int, slots: tuple[int, ...]
) -> dict[int, PoolNode]:
    """The nodes at `slots` (a placement's ancestors), locked for update."""
    return await repo.nodes_at(session, level, slots)


async def add_node(
    session: AsyncSession,
    *,
    level: int,
    slot: int,
    owner_id: int,
    filled: int,
    reserved: int,
    completed: bool,
) -> None:
    session.add(
        PoolNode(
            level=level,
            slot=slot,
            user_id=owner_id,
            filled=filled,
            reserved=reserved,
            completed=completed,
        )
    )
    await repo.count_node(session, level)


async def progression_slot(
    session: AsyncSession,
    *,
    level: int,
    owner_id: int,
    amount: int,
    plan_hash: str,
    chain_event_id: int,
) -> int:
    """Levels >= 2 have no leases: an auto-progression takes the level's next slot at once."""
    pool = await repo.pool_for_update(session, level)
    if pool is None:
        raise InconsistentState(f"level {level} has no pool")
    slot = pool.next_slot
    pool.next_slot = slot + 1
    session.add(
        Placement(
            user_id=owner_id,
            level=level,
            slot=slot,
            amount=amount,
            source=PlacementSource.PROGRESSION,
            status=PlacementStatus.CONFIRMED,
            plan_hash=plan_hash,
            chain_event_id=chain_event_id,
        )
    )
    return slot


async def ensure_levels(session: AsyncSession, prices: list[int], root_owner: int) -> None:
    """Every level's tree, rooted at `root_owner` (the company) in slot 0; idempotent."""
    for level, price in enumerate(prices, start=1):
        await repo.ensure_level(session, level, price, root_owner)


# ----------------------------------------------------------------------- reads for the API


async def positions(session: AsyncSession, user_id: int) -> list[PoolNode]:
    """The participant's nodes, one per level it reached."""
    return await repo.nodes_of_user(session, user_id)


@dataclass(frozen=True)
class LevelSummary:
    level: int
    price: int
    nodes: int
    queue: int
    completed: int
    progressions: int


async def summary(session: AsyncSession) -> list[LevelSummary]:
    """Per level: nodes, the queue of nodes with a free child slot, completed matrices and
    auto-progressions into the level. In a breadth-first tree of `n` nodes, the nodes with a
    free child slot are the last `n - (n - 1) // 2` (level 1's holes under unpaid leases count
    as free)."""
    completed = await repo.completed_counts(session)
    progressions = await repo.progression_counts(session)
    out = []
    for pool in await repo.pools(session):
        n = int(pool.node_count)
        out.append(
            LevelSummary(
                level=pool.level,
                price=int(pool.price),
                nodes=n,
                queue=n - (n - 1) // 2 if n > 0 else 0,
                completed=completed.get(pool.level, 0),
                progressions=progressions.get(pool.level, 0),
            )
        )
    return out


async def queue(session: AsyncSession, level: int, limit: int) -> list[tuple[int, str, int]]:
    """The level's FIFO of nodes with a free child slot, breadth-first (DESIGN §4)."""
    pools = {p.level: p for p in await repo.pools(session)}
    pool = pools.get(level)
    if pool is None:
        return []
    first_open = await repo.lowest_open_slot(session, level)
    if first_open is None:
        first_open = int(pool.next_slot)
    return await repo.queue(session, level, parent_slot(first_open) if first_open else 0, limit)


async def nodes(
    session: AsyncSession, level: int, cursor: int | None, limit: int
) -> list[tuple[int, str, int, bool]]:
    return await repo.nodes_page(session, level, cursor, limit)


async def subtree(
    session: AsyncSession, level: int, slot: int, depth: int
) -> list[tuple[int, str, int, bool]]:
    """The node at `slot` and its confirmed descendants within `depth` layers."""
    slots: list[int] = []
    first, width = slot, 1
    for _ in range(depth + 1):
        slots.extend(range(first, first + width))
        first, width = 2 * first + 1, width * 2
    return await repo.nodes_in(session, level, slots)


async def lease_chosen_slot(
    session: AsyncSession,
    *,
    slot: int,
    now: int,
    user_id: int,
    referrer_id: int,
    transaction_id: int,
    deadline: int,
) -> LeaseTaken:
    """Lease a slot an admin chose (manual placement): refused if the slot is taken (confirmed
    or under a live lease) or its parent holds no confirmed node. The caller holds
    `lock_leases`."""
    if slot < 1:
        raise SlotTaken("slot 0 is the company's root")
    if await repo.node_at(session, 1, parent_slot(slot)) is None:
        raise ParentEmpty(f"slot {slot}'s parent slot {parent_slot(slot)} holds no confirmed node")
    lease = await repo.lease_of_slot(session, 1, slot)
    pool = await repo.pool_for_update(session, 1)
    if pool is None:
        raise SlotUnavailable("the pool is not initialised (no company root)")
    if lease is not None:
        live = lease.status == LeaseStatus.LEASED and lease.deadline >= now
        if lease.status == LeaseStatus.CONFIRMED or live:
            raise SlotTaken(f"slot {slot} is {'confirmed' if not live else 'leased'}")
        lapsed = lease.transaction_id if lease.status == LeaseStatus.LEASED else None
        lease.user_id, lease.referrer_id, lease.transaction_id = (
            user_id,
            referrer_id,
            transaction_id,
        )
        lease.deadline, lease.status = deadline, LeaseStatus.LEASED
        return LeaseTaken(slot, lapsed)
    repo.add_free_slots(session, 1, range(pool.next_slot, slot))
    pool.next_slot = max(pool.next_slot, slot + 1)
    repo.add_lease(
        session,
        1,
        slot,
        LeaseStatus.LEASED,
        user_id=user_id,
        referrer_id=referrer_id,
        transaction_id=transaction_id,
        deadline=deadline,
    )
    return LeaseTaken(slot, None)
