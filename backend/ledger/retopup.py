"""Settle a final retopup: LEVEL income up the sponsor chain (DESIGN §4)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from backend.models import ChainEvent, Retopup
from backend.plan import engine
from backend.plan.config import PlanConfig
from backend.plan.errors import InconsistentState
from backend.rewards.service import BalanceDeltas, LineWriter
from backend.users import service as users


async def settle_retopup(session: AsyncSession, event: ChainEvent, plan: PlanConfig) -> None:
    a = event.args
    amount, nonce = int(a["amount"]), int(a["nonce"])
    plan_hash = str(a["planHash"]).lower()
    user = await users.retopping_participant(session, a["user"])
    company = await users.company_id(session)
    generations = await users.sponsor_chain(
        session, user.referrer_id, plan.generations, at_block=event.block_number
    )
    payer = await users.participant_at(session, user, event.block_number)
    result = engine.retopup(plan, company, payer, amount, generations)
    users.mark_retopped(user)
    await users.confirm_payload(session, nonce, event.tx_hash, event.block_number)
    session.add(
        Retopup(
            user_id=user.id,
            amount=amount,
            nonce=nonce,
            plan_hash=plan_hash,
            chain_event_id=event.id,
        )
    )
    writer = LineWriter(event.id, plan_hash, BalanceDeltas())
    await writer.write(session, result.lines, "retopup")
    if writer.total != amount:
        raise InconsistentState(f"retopup lines sum {writer.total} wei for {amount} wei")
    await writer.deltas.apply(session)
