"""The published compensation plans: readable by anyone, so participants can check the plan
hash their registration carried (DESIGN §5)."""

from __future__ import annotations

from fastapi import APIRouter

from backend.core.deps import ResourcesDep, Session
from backend.models import PlanVersion
from backend.monitoring import service as monitoring
from backend.plan_versions import service
from backend.plan_versions.schemas import PlanOut, PlanVersionOut

router = APIRouter(tags=["plan"])


def _out(row: PlanVersion) -> PlanVersionOut:
    return PlanVersionOut(
        version=row.version,
        planHash=row.plan_hash,
        effectiveFrom=row.effective_from,
        effectiveBlock=row.effective_block,
        document=row.document,
    )


@router.get("/plan", response_model=PlanOut)
async def plan(session: Session, res: ResourcesDep) -> PlanOut:
    """The plan in force, every published version with its hash, and the company wallet."""
    rows = await service.versions(session)
    block, _ = await monitoring.confirmed_block(session)
    current = service.in_force_among(rows, block) or rows[-1]
    return PlanOut(
        companyWallet=res.settings.company_wallet or None,
        current=_out(current),
        versions=[_out(r) for r in rows],
    )
