"""Chain time as the ledger knows it: the newest block the listener has confirmed.

The contract compares a payload's deadline with block time, and a lease lapses only when a
confirmed block is past its deadline, so deadlines start from the later of the wall clock and
the confirmed block's time: never from a clock behind the chain's.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from backend.models import Anomaly, ChainEvent, ReconciliationReport
from backend.monitoring import repository as repo
from backend.monitoring.errors import AnomalyAcknowledged, AnomalyNotFound


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


async def listener_halt(session: AsyncSession) -> str | None:
    """Why the listener halted (a reorg deeper than finality), or None."""
    return await repo.listener_halt(session)


async def submissions_blocked(session: AsyncSession) -> str | None:
    """Why payouts must not be submitted now, or None. An unacknowledged anomaly (an event
    the ledger did not expect: a stolen signer key at work, say) stops every submission until
    an operator has looked at it."""
    halted = await repo.listener_halt(session)
    if halted is not None:
        return f"the listener is halted: {halted}"
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


async def resume_listener(
    session: AsyncSession, canonical_hash: Callable[[int], Awaitable[str]], from_block: int | None
) -> list[str]:
    """Clear the listener's halt after an operator investigated a deep reorg. The cursor moves
    to `from_block - 1` (or stays) and takes that block's canonical hash, so ingestion resumes
    on the chain as it is now; events already applied from replaced blocks stay in the ledger
    (the unique key per log keeps a re-mined one from being applied twice): reconciliation
    shows what they moved. Returns what was done, one line per cursor."""
    done = []
    for cursor in await repo.cursors(session):
        if cursor.halted_reason is None and from_block is None:
            continue
        block = cursor.last_block if from_block is None else from_block - 1
        cursor.last_block = block
        cursor.last_block_hash = await canonical_hash(block) if block >= 0 else None
        done.append(f"{cursor.id}: resumed after block {block} (was: {cursor.halted_reason})")
        cursor.halted_reason, cursor.halted_at = None, None
    return done


async def acknowledge_anomaly(session: AsyncSession, anomaly_id: int, actor: str) -> Anomaly:
    """Mark an anomaly investigated (once); payouts resume when none is left open."""
    row = await repo.anomaly_for_update(session, anomaly_id)
    if row is None:
        raise AnomalyNotFound(f"no anomaly {anomaly_id}")
    if row.acknowledged_at is not None:
        raise AnomalyAcknowledged(f"anomaly {anomaly_id} was acknowledged by {row.acknowledged_by}")
    row.acknowledged_at = datetime.now(UTC)
    row.acknowledged_by = actor
    return row


async def anomalies_open(session: AsyncSession) -> list[Anomaly]:
    """Anomalies not acknowledged yet, oldest first."""
    return await repo.open_anomalies(session)


async def reconciliation_reports(session: AsyncSession, limit: int) -> list[ReconciliationReport]:
    """The stored results of the reconciliation job, newest first."""
    return await repo.reconciliation_reports(session, limit)


async def anomaly_flows(session: AsyncSession) -> tuple[int, int]:
    """(Σ inflow, Σ outflow) the anomalies moved: reconciliation counts them beside the
    liabilities, so the books balance to the wei while they are investigated."""
    return await repo.anomaly_flows(session)
