"""What a final chain event means to the people watching: announced on the live-event
channels after the listener's transaction commits (backend/core/events.py)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.events import STAFF, publish, user_channel
from backend.models import ChainEvent
from backend.rewards import service as rewards
from backend.users import service as users

_SETTLED = {"PayoutExecuted": "paid", "PayoutDeferred": "claimable", "Claimed": "paid"}


async def _user_id(session: AsyncSession, wallet: str) -> int | None:
    user = await users.by_wallet(session, wallet)
    return user.id if user is not None else None


async def announce(session: AsyncSession, event: ChainEvent) -> None:
    """Queue the live events of one applied chain event (sent only if its range commits)."""
    a = event.args
    where = {"block": event.block_number, "txHash": event.tx_hash}
    if event.name in ("RegistrationAccepted", "RetopupCompleted"):
        if event.name == "RegistrationAccepted":
            uid = await _user_id(session, a["user"])
            if uid is not None:
                publish(
                    session,
                    user_channel(uid),
                    "registration.confirmed",
                    {"slot": a["slot"], **where},
                )
            publish(
                session, STAFF, "pool.placement", {"slot": a["slot"], "user": a["user"], **where}
            )
        for recipient, by_status in (await rewards.lines_of_event(session, event.id)).items():
            publish(
                session,
                user_channel(recipient),
                "reward.created",
                {
                    "event": event.name,
                    "byStatus": {k: str(v) for k, v in by_status.items()},
                    **where,
                },
            )
    elif event.name in _SETTLED:
        wallet = a.get("recipient") or a.get("account")
        uid = await _user_id(session, str(wallet)) if wallet else None
        if uid is not None:
            publish(
                session,
                user_channel(uid),
                "reward.settled",
                {
                    "status": _SETTLED[event.name],
                    "amount": a["amount"],
                    "batchId": a.get("batchId"),
                    **where,
                },
            )
    elif event.name == "BatchExecuted":
        publish(
            session,
            STAFF,
            "batch.executed",
            {
                "batchId": a["batchId"],
                "paidTotal": a["paidTotal"],
                "deferredTotal": a["deferredTotal"],
                **where,
            },
        )
