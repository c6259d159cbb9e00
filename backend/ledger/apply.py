"""Apply one final chain event to the ledger: the listener's only way into the ledger.

Each event the ledger acts on has one handler; every other event of the contract (signer
rotation, cap, pause, ownership) is stored by the listener for audit only. A handler that finds
the event contradicting the ledger raises `UnexpectedEvent`, and the caller's transaction rolls
back: nothing of it is written.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from backend.ledger import payouts
from backend.ledger.errors import UnexpectedEvent
from backend.ledger.notify import announce
from backend.ledger.registration import settle_registration
from backend.ledger.retopup import settle_retopup
from backend.models import ChainEvent
from backend.plan.errors import PlanError
from backend.plan_versions import service as plan_versions
from backend.plan_versions.errors import UnknownPlan

Handler = Callable[[AsyncSession, ChainEvent], Awaitable[None]]


async def _registration(session: AsyncSession, event: ChainEvent) -> None:
    plan = await plan_versions.by_hash(session, event.args["planHash"])
    await settle_registration(session, event, plan)


async def _retopup(session: AsyncSession, event: ChainEvent) -> None:
    plan = await plan_versions.by_hash(session, event.args["planHash"])
    await settle_retopup(session, event, plan)


HANDLERS: dict[str, Handler] = {
    "RegistrationAccepted": _registration,
    "RetopupCompleted": _retopup,
    "PayoutExecuted": payouts.payout_executed,
    "PayoutDeferred": payouts.payout_deferred,
    "BatchExecuted": payouts.batch_executed,
    "Claimed": payouts.claimed,
}


def acts_on(name: str) -> bool:
    """Whether events named `name` change the ledger (others are stored for audit only)."""
    return name in HANDLERS


async def apply_event(session: AsyncSession, event: ChainEvent) -> None:
    """Apply a stored, final chain event. Raises UnexpectedEvent when it contradicts the
    ledger; the caller rolls back."""
    handler = HANDLERS.get(event.name)
    if handler is None:
        return
    try:
        await handler(session, event)
    except (PlanError, UnknownPlan) as exc:
        raise UnexpectedEvent(event.name, event.id, str(exc)) from exc
    await announce(session, event)
