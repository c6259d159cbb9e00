"""HTTP routes of the reward ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from backend.core.deps import CurrentUser, Session
from backend.core.security import READERS
from backend.core.types import NAME_PATTERN, WeiStr
from backend.models import RewardStatus
from backend.rewards import service
from backend.rewards.schemas import RewardOut, RewardPage

router = APIRouter(prefix="/rewards", tags=["rewards"])

StatusName = Literal["pending", "held", "reserved", "batched", "claimable", "paid", "reinvested"]


@router.get("/pending", response_model=RewardPage)
async def pending_rewards(
    session: Session,
    principal: CurrentUser,
    status: StatusName = "pending",
    type: Annotated[str | None, Query(max_length=24, pattern=NAME_PATTERN)] = None,
    user: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    minAgeSeconds: Annotated[int | None, Query(ge=0, le=10 * 365 * 86_400)] = None,
    minAmount: WeiStr | None = None,
    cursor: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> RewardPage:
    """Reward lines by status (pending by default) with filters, newest first. Staff see
    everyone's; a participant sees its own (`user` is then its own id)."""
    if not principal.can(READERS):
        user = principal.user_id
    rows = await service.page(
        session,
        cursor=cursor,
        limit=limit,
        user_id=user,
        kind=type,
        status=RewardStatus(status),
        created_before=(
            datetime.now(UTC) - timedelta(seconds=minAgeSeconds) if minAgeSeconds else None
        ),
        min_amount=minAmount,
    )
    items = [
        RewardOut(
            id=r.id,
            userId=r.user_id,
            amount=int(r.amount),
            type=r.kind,
            status=r.status,
            level=r.level,
            reason=r.reason,
            batchId=r.batch_id,
            createdAt=r.created_at,
        )
        for r in rows
    ]
    return RewardPage(items=items, nextCursor=items[-1].id if len(items) == limit else None)
