from __future__ import annotations

from fastapi import APIRouter

from backend.core.db import unit_of_work
from backend.core.deps import Ctx
from backend.treasury import service
from backend.treasury.schemas import TreasurySummary

router = APIRouter(tags=["treasury"])


@router.get("/treasury/summary", response_model=TreasurySummary)
async def treasury_summary(ctx: Ctx) -> TreasurySummary:
    """Contract balance beside confirmed inflows − outflows and the ledger's liabilities,
    with any difference in wei."""
    async with unit_of_work(ctx.sessions) as session:
        return await service.summary(session, ctx.w3, ctx.settings.contract_address)
