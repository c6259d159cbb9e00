"""Request and response models of the admin console's actions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from backend.core.security import Role
from backend.core.types import Text, Wallet, WeiStr


class FreezeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Text | None = Field(default=None, max_length=256)


class FreezeOut(BaseModel):
    userId: int
    frozen: bool
    effectiveBlock: int = Field(description="Events from this block on see the new state")


class ConfigIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan: dict[str, Any] = Field(description="A complete plan document (docs/plan.md)")
    effectiveBlock: int | None = Field(
        default=None,
        ge=0,
        le=2**62,
        description="New payloads carry it from this confirmed block on",
    )


class ConfigOut(BaseModel):
    version: int
    planHash: str
    effectiveBlock: int | None


class RoleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    wallet: Wallet
    role: Role
    grant: bool = Field(description="true grants the role, false revokes it")


class RoleOut(BaseModel):
    wallet: str
    role: Role
    granted: bool


class ManualPlacementIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    wallet: Wallet
    referrer: Wallet
    slot: int = Field(ge=1, le=2**40)


class LogEntry(BaseModel):
    id: int
    name: str
    block: int
    txHash: str
    logIndex: int
    args: dict[str, Any]
    processedAt: datetime | None


class LogPage(BaseModel):
    items: list[LogEntry]
    nextCursor: int | None


class AuditEntry(BaseModel):
    id: int
    actor: str
    action: str
    target: str | None
    details: dict[str, Any]
    block: int | None
    at: datetime


class AuditPage(BaseModel):
    items: list[AuditEntry]
    nextCursor: int | None


class ReplayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fromBlock: int = Field(ge=0, le=2**62, description="First block to ingest again")


class ReplayOut(BaseModel):
    fromBlock: int
    cursors: list[str] = Field(description="What was rewound (and any halt cleared)")


class AnomalyAckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Text = Field(min_length=1, max_length=1000, description="What the operator found")


class AnomalyOut(BaseModel):
    id: int
    kind: str
    detail: str
    txHash: str | None
    inflow: WeiStr
    outflow: WeiStr
    acknowledgedBy: str | None
