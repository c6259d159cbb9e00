"""Settle a confirmed retopup: LEVEL income up the sponsor chain (DESIGN §4)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from backend.models import ChainEvent, Retopup
from backend.plan import engine
from backend.plan.config import PlanConfig
from backend.plan.errors import InconsistentState
from backend.plan.types import Participant
from backend.pool.settle import company_id, participant
from backend.rewards.ledger import BalanceDeltas, LineWriter
from backend.users import repository as users


async def sponsor_chain(
    session: AsyncSession, first_id: int | None, depth: int
) -> list[Participant]:
    """Up to `depth` sponsor generations, nearest first: at most `depth` primary-key reads."""
    chain: list[Participant] = []
    next_id = first_id
    while next_id is not None and len(chain) < depth:
        sponsor = await users.by_id(session, next_id)
        if sponsor is None:
            break
        chain.append(participant(sponsor))
        next_id = sponsor.referrer_id
    return chain


async def settle_retopup(session: AsyncSession, event: ChainEvent, plan: PlanConfig) -> None:
    a = event.args
    amount, nonce = int(a["amount"]), int(a["nonce"])
    user = await users.by_wallet(session, a["user"], lock=True)
    if user is None or user.status != "active":
        raise InconsistentState(f"retopup by {a['user']}, who is not an active participant")
    company = await company_id(session)
    generations = await sponsor_chain(session, user.referrer_id, plan.generations)
    result = engine.retopup(plan, company, participant(user), amount, generations)
    user.has_retopup = True
    session.add(
        Retopup(
            user_id=user.id,
            amount=amount,
            nonce=nonce,
            plan_hash=str(a["planHash"]).lower(),
            chain_event_id=event.id,
        )
    )
    writer = LineWriter(event.id, str(a["planHash"]).lower(), BalanceDeltas())
    await writer.write(session, result.lines, "retopup")
    if writer.total != amount:
        raise InconsistentState(f"retopup lines sum {writer.total} wei for {amount} wei")
    await writer.deltas.apply(session)
