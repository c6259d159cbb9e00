"""Level trees, their nodes, placements and level-1 slot leases."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from backend.models.base import Base, BigPK, CreatedAt, Hash32, Wei, one_of


class PlacementStatus(StrEnum):
    PENDING = "pending"
    """Leased for a registration that is not confirmed yet."""
    CONFIRMED = "confirmed"
    EXPIRED = "expired"
    """Its registration's deadline passed on a confirmed block unpaid."""


class PlacementSource(StrEnum):
    REGISTRATION = "registration"
    PROGRESSION = "progression"
    """An auto-progression funded from a completed matrix's reserve."""


class LeaseStatus(StrEnum):
    LEASED = "leased"
    """Held for a signed (or being signed) registration until its deadline."""
    CONFIRMED = "confirmed"
    """A registration took the slot."""
    FREE = "free"
    """Free below the high-water mark: its last lease lapsed unpaid, or it was passed over
    while its parent was not confirmed yet. It is leased again before any higher slot."""


class Pool(Base):
    """One binary tree per level. `next_slot` is the high-water mark: every slot below it has
    been leased or placed at least once."""

    __tablename__ = "pools"

    level: Mapped[int] = mapped_column(Integer, primary_key=True)
    price: Mapped[int] = mapped_column(Wei)
    next_slot: Mapped[int] = mapped_column(BigInteger, default=0)
    node_count: Mapped[int] = mapped_column(BigInteger, default=0)


class PoolNode(Base):
    """A confirmed position. `filled` counts confirmed nodes in the three layers below it
    (its matrix, 0..14); `reserved` is what its owner earned from the matrix's last placements."""

    __tablename__ = "pool_nodes"
    __table_args__ = (
        UniqueConstraint("level", "slot", name="uq_pool_nodes_level_slot"),
        CheckConstraint("filled BETWEEN 0 AND 14", name="filled"),
        Index("ix_pool_nodes_user_level", "user_id", "level"),
    )

    id: Mapped[BigPK]
    level: Mapped[int] = mapped_column(Integer, ForeignKey("pools.level"))
    slot: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"))
    filled: Mapped[int] = mapped_column(Integer, default=0)
    reserved: Mapped[int] = mapped_column(Wei, default=0)
    completed: Mapped[bool] = mapped_column(Boolean, default=False)
    placement_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("placements.id"))
    created_at: Mapped[CreatedAt]


class Placement(Base):
    """A placement into a level: pending while its registration is unconfirmed."""

    __tablename__ = "placements"
    __table_args__ = (
        CheckConstraint(one_of("status", PlacementStatus), name="status"),
        CheckConstraint(one_of("source", PlacementSource), name="source"),
        Index(
            "uq_placements_confirmed_slot",
            "level",
            "slot",
            unique=True,
            postgresql_where=text("status = 'confirmed'"),
        ),
    )

    id: Mapped[BigPK]
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"), index=True)
    level: Mapped[int] = mapped_column(Integer)
    slot: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(Wei)
    source: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=PlacementStatus.PENDING)
    plan_hash: Mapped[str] = mapped_column(Hash32)
    transaction_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("transactions.id"))
    chain_event_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("chain_events.id"))
    created_at: Mapped[CreatedAt]


class SlotLease(Base):
    """One row per level-1 slot below the pool's high-water mark (`Pool.next_slot`). `leased`
    holds it for a registration until `deadline` (unix seconds, compared with confirmed block
    time); `free` rows are the holes that are leased first; `confirmed` means a registration
    took it. A free row has no user."""

    __tablename__ = "slot_leases"
    __table_args__ = (
        UniqueConstraint("level", "slot", name="uq_slot_leases_level_slot"),
        CheckConstraint(one_of("status", LeaseStatus), name="status"),
        # A participant holds at most one live lease.
        Index(
            "uq_slot_leases_leased_user",
            "user_id",
            unique=True,
            postgresql_where=text("status = 'leased'"),
        ),
        Index("ix_slot_leases_level_status_slot", "level", "status", "slot"),
        # Live level-1 leases by deadline: the lapsed ones are a prefix (pool.lowest_hole).
        Index(
            "ix_slot_leases_lapsing",
            "deadline",
            postgresql_where=text("level = 1 AND status = 'leased'"),
        ),
    )

    id: Mapped[BigPK]
    level: Mapped[int] = mapped_column(Integer, default=1)
    slot: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))
    referrer_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))
    transaction_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("transactions.id"))
    deadline: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default=LeaseStatus.LEASED)
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
