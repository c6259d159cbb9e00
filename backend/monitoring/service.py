"""Chain time as the ledger knows it: the newest block the listener has confirmed.

The contract compares a payload's deadline with block time, and a lease lapses only when a
confirmed block is past its deadline, so deadlines start from the later of the wall clock and
the confirmed block's time: never from a clock behind the chain's.
"""

from __future__ import annotations

import time

from sqlalchemy.ext.asyncio import AsyncSession

from backend.models import ChainEvent, ReconciliationReport
from backend.monitoring import repository as repo


async def confirmed_block(session: AsyncSession) -> tuple[int, int]:
    """(number, timestamp) of the newest confirmed block; (-1, 0) before the first."""
    return await repo.confirmed_block(session)


async def confirmed_time(session: AsyncSession) -> int:
    return (await repo.confirmed_block(session))[1]


def deadline_after(confirmed_time: int, seconds: int) -> int:
    """A payload deadline `seconds` from now, by the later of the wall and the chain clock."""
    return max(int(time.time()), confirmed_time) + seconds


def still_valid(deadline: int, confirmed_time: int, *, margin: int = 0) -> bool:
    """Whether a payload with `deadline` can still execute `margin` seconds from now."""
    return deadline > max(int(time.time()), confirmed_time) + margin


async def submissions_blocked(session: AsyncSession) -> str | None:
    """Why payouts must not be submitted now, or None. An unacknowledged anomaly (an event
    the ledger did not expect: a stolen signer key at work, say) stops every submission until
    an operator has looked at it."""
    open_anomalies = await repo.unacknowledged_anomalies(session)
    if open_anomalies:
        return f"{open_anomalies} unacknowledged anomal{'y' if open_anomalies == 1 else 'ies'}"
    return None


async def events(
    session: AsyncSession,
    *,
    cursor: int | None,
    limit: int,
    name: str | None = None,
    from_block: int | None = None,
    to_block: int | None = None,
) -> list[ChainEvent]:
    """The contract's final events as ingested, newest first."""
    return await repo.events_page(
        session, before_id=cursor, limit=limit, name=name, from_block=from_block, to_block=to_block
    )


async def reconciliation_reports(session: AsyncSession, limit: int) -> list[ReconciliationReport]:
    """The stored results of the reconciliation job, newest first."""
    return await repo.reconciliation_reports(session, limit)
