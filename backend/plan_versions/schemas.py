"""Response models of published plans."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class PlanVersionOut(BaseModel):
    version: int
    planHash: str = Field(description="keccak-256 of the canonical document; payloads carry it")
    effectiveFrom: datetime
    effectiveBlock: int | None
    document: dict[str, Any]


class PlanOut(BaseModel):
    companyWallet: str | None
    current: PlanVersionOut
    versions: list[PlanVersionOut]
