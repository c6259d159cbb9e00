"""Settle a confirmed registration: activate the participant, place its node, cascade any
auto-progressions and write the reward lines (DESIGN §3, §4).

Each placement loads only its (at most three) ancestor nodes and their owners, so settling
touches O(1) rows whatever the tree's size; the engine (backend.plan) decides everything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.db import LOCK_LEVEL1_LEASES, advisory_xact_lock
from backend.models import ChainEvent, Placement, Pool, PoolNode, SlotLease, Transaction, User
from backend.plan import engine
from backend.plan.config import PlanConfig
from backend.plan.errors import InconsistentState
from backend.plan.types import NodeView, Participant, ReserveAction
from backend.pool import repository as pool_repo
from backend.rewards.ledger import BalanceDeltas, LineWriter, flip_node_reserve
from backend.users import repository as users


def participant(user: User) -> Participant:
    return Participant(user.id, user.referrer_id, user.is_frozen, user.has_retopup)


async def participants(session: AsyncSession, ids: Iterable[int]) -> dict[int, Participant]:
    wanted = set(ids)
    if not wanted:
        return {}
    rows = await session.scalars(select(User).where(User.id.in_(wanted)))
    return {u.id: participant(u) for u in rows}


async def company_id(session: AsyncSession) -> int:
    cid = await session.scalar(select(User.id).where(User.role == "company"))
    if cid is None:
        raise InconsistentState("no company root participant: run the seed first")
    return int(cid)


@dataclass
class _Pending:
    level: int
    slot: int
    owner_id: int
    amount: int
    source: str


async def place_cascade(
    session: AsyncSession,
    plan: PlanConfig,
    company: int,
    first: _Pending,
    writer: LineWriter,
) -> None:
    """Place `first`, then every auto-progression it triggers, in order."""
    queue = [first]
    while queue:
        step = queue.pop(0)
        anc_slots = engine.ancestor_slots(step.slot)
        nodes = await pool_repo.nodes_at(session, step.level, anc_slots)
        missing = [s for s in anc_slots if s not in nodes]
        if missing:
            raise InconsistentState(
                f"level {step.level} slot {step.slot}: ancestor slots {missing} are not placed"
            )
        owners = await participants(session, (n.user_id for n in nodes.values()))
        ancestors = [
            (
                NodeView(
                    step.level,
                    s,
                    nodes[s].user_id,
                    nodes[s].filled,
                    int(nodes[s].reserved),
                    nodes[s].completed,
                ),
                owners[nodes[s].user_id],
            )
            for s in anc_slots
        ]
        result = engine.place(
            plan, company, step.level, step.slot, step.owner_id, step.amount, ancestors
        )
        session.add(
            PoolNode(
                level=step.level,
                slot=step.slot,
                user_id=step.owner_id,
                filled=result.node.filled,
                reserved=result.node.reserved,
                completed=result.node.completed,
            )
        )
        for view in result.ancestors:
            row = nodes[view.slot]
            row.filled, row.reserved, row.completed = view.filled, view.reserved, view.completed
        await session.execute(
            update(Pool).where(Pool.level == step.level).values(node_count=Pool.node_count + 1)
        )
        await writer.write(session, result.lines, step.source)
        # Reserve effects flip rows written before this step (and this step's own lines, which
        # are already inserted), so they run after the write.
        for effect in result.reserve_effects:
            to_status = (
                "reinvested" if effect.action == ReserveAction.REINVEST else str(effect.status)
            )
            moved = await flip_node_reserve(
                session, effect.level, effect.slot, to_status, writer.deltas
            )
            if moved != effect.amount:
                raise InconsistentState(
                    f"node L{effect.level}/{effect.slot}: engine reserve {effect.amount} wei, "
                    f"ledger reserve {moved} wei"
                )
            if effect.action == ReserveAction.REINVEST:
                writer.reinvested += moved
            await writer.write(session, effect.lines, "progression")
        for prog in result.progressions:
            pool = await pool_repo.pool_for_update(session, prog.level)
            if pool is None:
                raise InconsistentState(f"level {prog.level} has no pool")
            slot = pool.next_slot
            pool.next_slot = slot + 1
            session.add(
                Placement(
                    user_id=prog.owner_id,
                    level=prog.level,
                    slot=slot,
                    amount=prog.amount,
                    source="progression",
                    status="confirmed",
                    plan_hash=writer.plan_hash,
                    chain_event_id=writer.chain_event_id,
                )
            )
            queue.append(_Pending(prog.level, slot, prog.owner_id, prog.amount, "progression"))
        await session.flush()


async def settle_registration(session: AsyncSession, event: ChainEvent, plan: PlanConfig) -> None:
    """Apply a confirmed `RegistrationAccepted`. Works from the event alone (a rebuild from
    chain data needs no lease or payload rows), and reconciles them when present."""
    a = event.args
    slot, amount, nonce = int(a["slot"]), int(a["amount"]), int(a["nonce"])
    await advisory_xact_lock(session, LOCK_LEVEL1_LEASES)
    company = await company_id(session)
    referrer = await users.by_wallet(session, a["referrer"])
    if referrer is None or referrer.status != "active":
        raise InconsistentState(f"registration of {a['user']}: referrer {a['referrer']} unknown")
    user = await users.ensure_user(session, a["user"])
    if user.status == "active":
        raise InconsistentState(f"{a['user']} registered twice (nonce {nonce})")
    user.status, user.referrer_id = "active", referrer.id
    user.activated_block, user.activated_at = event.block_number, func.now()

    lease = await pool_repo.lease_of_slot(session, 1, slot)
    if lease is None:
        session.add(
            SlotLease(
                level=1,
                slot=slot,
                user_id=user.id,
                referrer_id=referrer.id,
                deadline=0,
                status="confirmed",
            )
        )
    elif lease.status == "confirmed":
        raise InconsistentState(f"level-1 slot {slot} confirmed twice")
    else:
        lease.status, lease.user_id, lease.referrer_id = "confirmed", user.id, referrer.id
    pool = await pool_repo.pool_for_update(session, 1)
    if pool is None:
        raise InconsistentState("level 1 has no pool: run the seed first")
    pool.next_slot = max(pool.next_slot, slot + 1)

    tx = await session.scalar(
        select(Transaction).where(Transaction.nonce == nonce).with_for_update()
    )
    placement = None
    if tx is not None:
        tx.status, tx.tx_hash, tx.block_number = "confirmed", event.tx_hash, event.block_number
        placement = await session.scalar(
            select(Placement).where(Placement.transaction_id == tx.id).with_for_update()
        )
    reg = engine.register(plan, company, participant(referrer), amount)
    if placement is None:
        placement = Placement(
            user_id=user.id,
            level=1,
            slot=slot,
            amount=reg.placement_amount,
            source="registration",
            plan_hash=writer_hash(a),
        )
        session.add(placement)
    placement.status, placement.chain_event_id = "confirmed", event.id
    placement.slot, placement.amount = slot, reg.placement_amount
    await session.flush()

    writer = LineWriter(event.id, writer_hash(a), BalanceDeltas())
    await writer.write(session, reg.lines, "registration")
    await place_cascade(
        session,
        plan,
        company,
        _Pending(1, slot, user.id, reg.placement_amount, "registration"),
        writer,
    )
    # Conservation (DESIGN §4): the event's lines sum to its inflow plus any reserve it moved
    # into a next-level placement.
    if writer.total != amount + writer.reinvested:
        raise InconsistentState(f"lines sum {writer.total} wei for an inflow of {amount} wei")
    await writer.deltas.apply(session)


def writer_hash(args: dict[str, str]) -> str:
    return str(args["planHash"]).lower()
