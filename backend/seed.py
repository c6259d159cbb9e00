"""Seed the ledger: the company wallet as the root participant and slot 0 of every level's
tree, the pools, and the current plan. Idempotent: safe to run on every start."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.plans import publish_plan
from backend.models import Pool, PoolNode
from backend.plan.config import PlanConfig
from backend.users import repository as users


async def seed(session: AsyncSession, company_wallet: str, plan: PlanConfig) -> int:
    """Returns the company's user id."""
    company = await users.ensure_user(session, company_wallet, role="company")
    if company.role != "company":
        raise RuntimeError(f"{company_wallet} is already a participant; it cannot be the company")
    company.status = "active"
    await publish_plan(session, plan)
    for level in range(1, plan.levels + 1):
        await session.execute(
            insert(Pool)
            .values(level=level, price=plan.price(level), next_slot=1, node_count=1)
            .on_conflict_do_nothing()
        )
        await session.execute(
            insert(PoolNode)
            .values(level=level, slot=0, user_id=company.id, filled=0, reserved=0, completed=False)
            .on_conflict_do_nothing()
        )
    return company.id
