"""Response models of the rewards domain."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from backend.core.types import WeiStr


class RewardOut(BaseModel):
    id: int
    userId: int
    amount: WeiStr
    type: str
    status: str
    level: int | None
    reason: str | None
    batchId: int | None
    createdAt: datetime


class RewardPage(BaseModel):
    items: list[RewardOut]
    nextCursor: int | None
