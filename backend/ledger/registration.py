"""Settle a final registration: activate the participant, place its node, cascade any
auto-progressions and write the reward lines (DESIGN §3, §4).

Each placement loads only its (at most three) ancestor nodes and their owners, so settling
touches O(1) rows whatever the tree's size; the engine (backend.plan) decides everything.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from backend.models import ChainEvent, PlacementSource, RewardStatus
from backend.plan import engine
from backend.plan.config import PlanConfig
from backend.plan.errors import InconsistentState
from backend.plan.types import NodeView, ReserveAction
from backend.pool import service as pool
from backend.rewards.service import BalanceDeltas, LineWriter, flip_node_reserve
from backend.users import service as users


@dataclass
class _Step:
    level: int
    slot: int
    owner_id: int
    amount: int
    source: str


async def place_cascade(
    session: AsyncSession,
    plan: PlanConfig,
    company: int,
    first: _Step,
    writer: LineWriter,
    block: int,
) -> None:
    """Place `first`, then every auto-progression it triggers, in order, with participants as
    they were at chain block `block` (freezes in force then)."""
    queue = [first]
    while queue:
        step = queue.pop(0)
        anc_slots = engine.ancestor_slots(step.slot)
        nodes = await pool.nodes_at(session, step.level, anc_slots)
        missing = [s for s in anc_slots if s not in nodes]
        if missing:
            raise InconsistentState(
                f"level {step.level} slot {step.slot}: ancestor slots {missing} are not placed"
            )
        owners = await users.participants(
            session, (n.user_id for n in nodes.values()), at_block=block
        )
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
        await pool.add_node(
            session,
            level=step.level,
            slot=step.slot,
            owner_id=step.owner_id,
            filled=result.node.filled,
            reserved=result.node.reserved,
            completed=result.node.completed,
        )
        for view in result.ancestors:
            row = nodes[view.slot]
            row.filled, row.reserved, row.completed = view.filled, view.reserved, view.completed
        await writer.write(session, result.lines, step.source)
        # Reserve effects flip rows written before this step (and this step's own lines, which
        # are already inserted), so they run after the write.
        for effect in result.reserve_effects:
            to_status = (
                RewardStatus.REINVESTED
                if effect.action == ReserveAction.REINVEST
                else RewardStatus(effect.status)
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
            await writer.write(session, effect.lines, PlacementSource.PROGRESSION)
        for prog in result.progressions:
            slot = await pool.progression_slot(
                session,
                level=prog.level,
                owner_id=prog.owner_id,
                amount=prog.amount,
                plan_hash=writer.plan_hash,
                chain_event_id=writer.chain_event_id,
            )
            queue.append(
                _Step(prog.level, slot, prog.owner_id, prog.amount, PlacementSource.PROGRESSION)
            )
        await session.flush()


async def settle_registration(session: AsyncSession, event: ChainEvent, plan: PlanConfig) -> None:
    """Apply a final `RegistrationAccepted`. Works from the event alone (a rebuild from chain
    data needs no lease or payload rows), and reconciles them when present."""
    a = event.args
    slot, amount, nonce = int(a["slot"]), int(a["amount"]), int(a["nonce"])
    plan_hash = str(a["planHash"]).lower()
    await pool.lock_leases(session)
    company = await users.company_id(session)
    user, referrer = await users.activate(session, a["user"], a["referrer"], event.block_number)
    await pool.confirm_lease(session, slot, user.id, referrer.id)
    payload = await users.confirm_payload(session, nonce, event.tx_hash, event.block_number)

    sponsor = await users.participant_at(session, referrer, event.block_number)
    reg = engine.register(plan, company, sponsor, amount)
    await pool.confirm_placement(
        session,
        transaction_id=payload.id if payload is not None else None,
        user_id=user.id,
        slot=slot,
        amount=reg.placement_amount,
        plan_hash=plan_hash,
        chain_event_id=event.id,
    )
    await session.flush()

    writer = LineWriter(event.id, plan_hash, BalanceDeltas())
    await writer.write(session, reg.lines, PlacementSource.REGISTRATION)
    await place_cascade(
        session,
        plan,
        company,
        _Step(1, slot, user.id, reg.placement_amount, PlacementSource.REGISTRATION),
        writer,
        event.block_number,
    )
    # Conservation (DESIGN §4): the event's lines sum to its inflow plus any reserve it moved
    # into a next-level placement.
    if writer.total != amount + writer.reinvested:
        raise InconsistentState(f"lines sum {writer.total} wei for an inflow of {amount} wei")
    await writer.deltas.apply(session)
