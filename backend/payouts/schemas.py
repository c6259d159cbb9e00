"""Request and response models of the payouts domain."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from backend.core.types import WeiStr


class BuildBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    maxRecipients: int | None = Field(
        default=None, ge=1, le=1000, description="Defaults to the configured cap"
    )


class PayoutLineOut(BaseModel):
    recipient: str
    amount: WeiStr
    status: str


class BatchOut(BaseModel):
    id: int
    status: str
    total: WeiStr
    recipientCount: int
    nonce: WeiStr
    deadline: int
    txHash: str | None
    attempts: int
    createdBy: str | None
    createdAt: datetime
    lines: list[PayoutLineOut] | None = None


class BatchPage(BaseModel):
    items: list[BatchOut]
    nextCursor: int | None
