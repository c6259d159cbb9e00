"""HTTP routes of the pool domain: the trees, readable by anyone signed in (the summary by
anyone at all: the pool's shape is public)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from backend.core.deps import CurrentUser, Session
from backend.pool import service
from backend.pool.errors import UnknownLevel
from backend.pool.schemas import (
    LevelOut,
    NodeOut,
    NodePage,
    PoolSummary,
    QueueEntry,
    QueueOut,
)

router = APIRouter(prefix="/pool", tags=["pool"])

Level = Annotated[int, Path(ge=1, le=64)]
Limit = Annotated[int, Query(ge=1, le=500)]


@router.get("/summary", response_model=PoolSummary)
async def pool_summary(session: Session) -> PoolSummary:
    """Per level: nodes, queue length, completed matrices, auto-progressions. Public."""
    levels = await service.summary(session)
    return PoolSummary(
        levels=[
            LevelOut(
                level=s.level,
                price=s.price,
                nodes=s.nodes,
                queue=s.queue,
                completedMatrices=s.completed,
                autoProgressions=s.progressions,
            )
            for s in levels
        ]
    )


async def _known(session: Session, level: int) -> None:
    if level not in {s.level for s in await service.summary(session)}:
        raise UnknownLevel(f"level {level} does not exist")


@router.get("/{level}/queue", response_model=QueueOut)
async def level_queue(
    level: Level, session: Session, _: CurrentUser, limit: Limit = 100
) -> QueueOut:
    """The first `limit` nodes of the level that still have a free child slot, in the order
    new placements fill them."""
    await _known(session, level)
    entries = await service.queue(session, level, limit)
    return QueueOut(
        level=level,
        entries=[QueueEntry(slot=s, wallet=w, freeChildren=f) for s, w, f in entries],
    )


@router.get("/{level}/nodes", response_model=NodePage)
async def level_nodes(
    level: Level,
    session: Session,
    _: CurrentUser,
    cursor: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    limit: Limit = 100,
) -> NodePage:
    """The level's confirmed nodes by slot; `cursor` is the last slot of the previous page."""
    await _known(session, level)
    rows = await service.nodes(session, level, cursor, limit)
    items = [NodeOut(slot=s, wallet=w, filled=f, completed=c) for s, w, f, c in rows]
    return NodePage(
        level=level, items=items, nextCursor=items[-1].slot if len(items) == limit else None
    )
