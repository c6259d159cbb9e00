"""Route each confirmed event to the backend code that settles it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.plans import plan_for_hash
from backend.models import ChainEvent
from backend.payouts.confirm import on_batch_executed, on_claimed, on_payout
from backend.pool.settle import settle_registration
from backend.rewards.retopup import settle_retopup

Handler = Callable[[AsyncSession, ChainEvent], Awaitable[None]]


async def _registration(session: AsyncSession, event: ChainEvent) -> None:
    await settle_registration(session, event, await plan_for_hash(session, event.args["planHash"]))


async def _retopup(session: AsyncSession, event: ChainEvent) -> None:
    await settle_retopup(session, event, await plan_for_hash(session, event.args["planHash"]))


async def _executed(session: AsyncSession, event: ChainEvent) -> None:
    await on_payout(session, event, deferred=False)


async def _deferred(session: AsyncSession, event: ChainEvent) -> None:
    await on_payout(session, event, deferred=True)


HANDLERS: dict[str, Handler] = {
    "RegistrationAccepted": _registration,
    "RetopupCompleted": _retopup,
    "PayoutExecuted": _executed,
    "PayoutDeferred": _deferred,
    "BatchExecuted": on_batch_executed,
    "Claimed": on_claimed,
}
# Every other event (signer rotation, cap, pause, ownership) is stored for audit only.
