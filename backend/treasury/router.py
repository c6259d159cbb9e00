"""HTTP routes of the treasury domain."""

from __future__ import annotations

from fastapi import APIRouter

from backend.core.deps import ResourcesDep, Session
from backend.treasury import service
from backend.treasury.schemas import TreasurySummary

router = APIRouter(tags=["treasury"])


@router.get("/treasury/summary", response_model=TreasurySummary)
async def treasury_summary(session: Session, res: ResourcesDep) -> TreasurySummary:
    """Contract balance beside confirmed inflows − outflows and the ledger's liabilities,
    with any difference in wei."""
    return await service.summary(session, res.w3, res.settings.contract_address)
