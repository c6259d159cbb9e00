"""Final chain events the ledger did not expect, recorded instead of retried forever.

A payout no batch line matches (a stolen signer key, a `PayoutExecuted` for an unknown batch),
a registration the ledger cannot place, a plan hash never published: the event is kept with its
full log and what it moved into or out of the contract, so reconciliation still balances to the
wei (contract balance = liabilities + Σ anomaly inflow − Σ anomaly outflow). While any anomaly
is unacknowledged the settlement worker submits nothing (`monitoring.submissions_blocked`);
ingestion of other events goes on.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.events import STAFF, publish
from backend.core.logging import log
from backend.models import Anomaly, ChainEvent

ANOMALIES = Counter(
    "autopool_ledger_anomalies_total", "Final chain events the ledger did not expect", ["event"]
)

# Which argument of each event is BNB entering (+) or leaving (−) the contract.
_INFLOW = {"RegistrationAccepted": "amount", "RetopupCompleted": "amount"}
_OUTFLOW = {"PayoutExecuted": "amount", "Claimed": "amount"}


def flows(name: str, args: dict[str, Any]) -> tuple[int, int]:
    """(inflow, outflow) in wei that an event of `name` moved, by the contract's own events."""
    inflow = int(args[_INFLOW[name]]) if name in _INFLOW else 0
    outflow = int(args[_OUTFLOW[name]]) if name in _OUTFLOW else 0
    return inflow, outflow


async def record(session: AsyncSession, event: ChainEvent, detail: str) -> Anomaly:
    """Store `event` as an anomaly (once per event) and raise the alert."""
    inflow, outflow = flows(event.name, event.args)
    existing = await session.scalar(select(Anomaly).where(Anomaly.chain_event_id == event.id))
    if existing is not None:
        return existing
    anomaly = Anomaly(
        chain_event_id=event.id,
        kind=f"unexpected-{event.name}",
        detail=detail,
        log={
            "name": event.name,
            "args": event.args,
            "blockNumber": event.block_number,
            "blockHash": event.block_hash,
            "txHash": event.tx_hash,
            "logIndex": event.log_index,
        },
        inflow=inflow,
        outflow=outflow,
    )
    session.add(anomaly)
    await session.flush()
    ANOMALIES.labels(event.name).inc()
    log.critical(
        "ledger anomaly: a final event the ledger did not expect; payouts stop until acknowledged",
        anomaly=anomaly.id,
        chain_event=event.name,
        tx=event.tx_hash,
        detail=detail,
        inflow=str(inflow),
        outflow=str(outflow),
    )
    publish(
        session,
        STAFF,
        "anomaly.recorded",
        {"id": anomaly.id, "event": event.name, "txHash": event.tx_hash, "detail": detail},
    )
    return anomaly
