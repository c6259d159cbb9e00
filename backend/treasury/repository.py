"""Queries for the treasury: confirmed inflows and outflows as the chain's events record them."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.models import ChainEvent
from backend.models.base import Wei

INFLOW_EVENTS = ("RegistrationAccepted", "RetopupCompleted")
# `claimTo` emits `Claimed` too (its `ClaimedTo` only names the receiver): not counted twice.
OUTFLOW_EVENTS = ("PayoutExecuted", "Claimed")


async def event_sum(session: AsyncSession, names: tuple[str, ...]) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(ChainEvent.args["amount"].astext.cast(Wei)), 0)).where(
            ChainEvent.name.in_(names)
        )
    )
    return int(total or 0)
