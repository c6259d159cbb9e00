"""Raw contract events (one row per log, forever) and the listener's sync cursor."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from backend.models.base import Address, Base, BigPK, CreatedAt, Hash32, Wei


class ChainEvent(Base):
    """A confirmed log of the contract. (chain_id, tx_hash, log_index) is unique, so ingesting
    the same range twice (restarts, replays, two listeners) stores each log once."""

    __tablename__ = "chain_events"
    __table_args__ = (
        UniqueConstraint("chain_id", "tx_hash", "log_index", name="uq_chain_events_log"),
    )

    id: Mapped[BigPK]
    chain_id: Mapped[int] = mapped_column(BigInteger)
    contract: Mapped[str] = mapped_column(Address)
    block_number: Mapped[int] = mapped_column(BigInteger, index=True)
    block_hash: Mapped[str] = mapped_column(Hash32)
    block_timestamp: Mapped[int] = mapped_column(BigInteger)
    tx_hash: Mapped[str] = mapped_column(Hash32)
    log_index: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(64))
    args: Mapped[dict[str, Any]] = mapped_column(JSONB)  # ints as decimal strings
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[CreatedAt]


class PendingEvent(Base):
    """A contract log in a block that is not final yet: shown to the participant it concerns
    as pending, never applied to the ledger. The listener replaces the whole set on every poll,
    so the logs of blocks a reorg removed disappear with them."""

    __tablename__ = "pending_events"
    __table_args__ = (
        UniqueConstraint("chain_id", "block_hash", "log_index", name="uq_pending_events_log"),
    )

    id: Mapped[BigPK]
    chain_id: Mapped[int] = mapped_column(BigInteger)
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(Hash32)
    tx_hash: Mapped[str] = mapped_column(Hash32)
    log_index: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(64))
    wallet: Mapped[str | None] = mapped_column(Address, index=True)  # whom it concerns
    amount: Mapped[int | None] = mapped_column(Wei)
    args: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[CreatedAt]


class BlockchainSync(Base):
    """How far the listener has ingested (confirmed blocks only)."""

    __tablename__ = "blockchain_sync"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # "<chainId>:<contract>"
    chain_id: Mapped[int] = mapped_column(BigInteger)
    contract: Mapped[str] = mapped_column(Address)
    last_block: Mapped[int] = mapped_column(BigInteger)
    last_block_hash: Mapped[str | None] = mapped_column(Hash32)
    last_block_timestamp: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Fencing token: bumped by each listener that takes leadership; a cursor update by a
    # listener holding an older generation is refused (it lost the lock without knowing).
    leader_generation: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Set when the chain under the final cursor changed (a reorg deeper than finality): ledger
    # writes stop until an operator investigates and resumes (`autopool listener resume`).
    halted_reason: Mapped[str | None] = mapped_column(Text)
    halted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Anomaly(Base):
    """A final chain event the ledger did not expect (a payout no batch line matches, a
    registration whose referrer is unknown, ...), kept with its full log. While any anomaly is
    unacknowledged, the settlement worker submits nothing; an operator investigates and
    acknowledges it (audited)."""

    __tablename__ = "anomalies"

    id: Mapped[BigPK]
    chain_event_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("chain_events.id"), unique=True
    )
    kind: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text)
    log: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    # What the event moved into or out of the contract that the ledger does not account for:
    # reconciliation counts it, so the books still balance to the wei while it is investigated.
    inflow: Mapped[int] = mapped_column(Wei, default=0, server_default="0")
    outflow: Mapped[int] = mapped_column(Wei, default=0, server_default="0")
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[CreatedAt]
