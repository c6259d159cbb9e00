"""The ledger's genesis: the company wallet as the root participant and slot 0 of every
level's tree, the pools, and the plan in force. Idempotent: safe to run on every start."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from backend.models import UserRole, UserStatus
from backend.plan.config import PlanConfig
from backend.plan_versions import service as plan_versions
from backend.pool import service as pool
from backend.users import service as users


async def seed(session: AsyncSession, company_wallet: str, plan: PlanConfig) -> int:
    """Returns the company's user id."""
    company = await users.ensure_user(session, company_wallet, UserRole.COMPANY)
    if company.role != UserRole.COMPANY:
        raise RuntimeError(f"{company_wallet} is already a participant; it cannot be the company")
    company.status = UserStatus.ACTIVE
    await plan_versions.publish(session, plan)
    await pool.ensure_levels(
        session, [plan.price(level) for level in range(1, plan.levels + 1)], company.id
    )
    return company.id
