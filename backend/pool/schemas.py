"""Response models of the pool domain."""

from __future__ import annotations

from pydantic import BaseModel, Field

from backend.core.types import WeiStr


class LevelOut(BaseModel):
    level: int
    price: WeiStr
    nodes: int
    queue: int = Field(description="Nodes with a free child slot (the FIFO new placements fill)")
    completedMatrices: int
    autoProgressions: int = Field(description="Placements into this level by auto-progression")


class PoolSummary(BaseModel):
    levels: list[LevelOut]


class QueueEntry(BaseModel):
    slot: int
    wallet: str
    freeChildren: int


class QueueOut(BaseModel):
    level: int
    entries: list[QueueEntry]


class NodeOut(BaseModel):
    slot: int
    wallet: str
    filled: int
    completed: bool


class NodePage(BaseModel):
    level: int
    items: list[NodeOut]
    nextCursor: int | None
