"""Published plan versions: the current one (from the plan file) and any by its on-chain hash.

A confirmed registration is settled under the plan whose hash it carries, even if a newer
plan took effect meanwhile (DESIGN §3), so the listener looks plans up by hash.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.errors import AppError
from backend.models import PlanVersion
from backend.plan.config import DEFAULT_PLAN_PATH, PlanConfig, load_plan

_by_hash: dict[str, PlanConfig] = {}


class UnknownPlan(AppError):
    status = 409
    type = "unknown-plan"
    title = "Unknown plan hash"


def current_plan(plan_path: str = "") -> PlanConfig:
    return load_plan(Path(plan_path) if plan_path else DEFAULT_PLAN_PATH)


async def publish_plan(session: AsyncSession, plan: PlanConfig) -> str:
    """Record `plan` in plan_versions (idempotent) and return its hash (0x-hex)."""
    plan_hash = plan.plan_hash_hex()
    await session.execute(
        insert(PlanVersion)
        .values(
            version=plan.version,
            plan_hash=plan_hash,
            document=plan.model_dump(mode="json"),
            effective_from=datetime.now(UTC),
        )
        .on_conflict_do_nothing()
    )
    _by_hash[plan_hash] = plan
    return plan_hash


async def plan_for_hash(session: AsyncSession, plan_hash: str) -> PlanConfig:
    plan = _by_hash.get(plan_hash)
    if plan is None:
        doc = await session.scalar(
            select(PlanVersion.document).where(PlanVersion.plan_hash == plan_hash)
        )
        if doc is None:
            raise UnknownPlan(f"no published plan has hash {plan_hash}")
        plan = PlanConfig.model_validate(doc)
        if plan.plan_hash_hex() != plan_hash:
            raise UnknownPlan(f"stored plan document does not hash to {plan_hash}")
        _by_hash[plan_hash] = plan
    return plan
