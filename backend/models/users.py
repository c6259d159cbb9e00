"""Participants and their cached balances."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Boolean, CheckConstraint, DateTime, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from backend.models.base import Address, Base, BigPK, CreatedAt, Wei, one_of


class UserStatus(StrEnum):
    PENDING = "pending"
    """Known (a registration was requested) but not confirmed on chain."""
    ACTIVE = "active"
    """Its registration is confirmed: a participant."""


class UserRole(StrEnum):
    USER = "user"
    ADMIN = "admin"
    COMPANY = "company"
    """The company wallet: root participant and slot 0 of every level's tree."""


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(one_of("status", UserStatus), name="status"),
        CheckConstraint(one_of("role", UserRole), name="role"),
    )

    id: Mapped[BigPK]
    wallet: Mapped[str] = mapped_column(Address, unique=True)  # EIP-55 checksum form
    referrer_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=UserStatus.PENDING)
    role: Mapped[str] = mapped_column(String(16), default=UserRole.USER)
    is_frozen: Mapped[bool] = mapped_column(Boolean, default=False)
    has_retopup: Mapped[bool] = mapped_column(Boolean, default=False)
    activated_block: Mapped[int | None] = mapped_column(BigInteger)
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[CreatedAt]


class UserBalance(Base):
    """Per-status sums of a user's rewards, kept in the same transaction as the reward rows
    (the rewards table is the source of truth; this is its O(1) summary)."""

    __tablename__ = "user_balances"

    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"), primary_key=True)
    pending: Mapped[int] = mapped_column(Wei, default=0)
    held: Mapped[int] = mapped_column(Wei, default=0)
    reserved: Mapped[int] = mapped_column(Wei, default=0)
    batched: Mapped[int] = mapped_column(Wei, default=0)
    claimable: Mapped[int] = mapped_column(Wei, default=0)
    paid: Mapped[int] = mapped_column(Wei, default=0)
    reinvested: Mapped[int] = mapped_column(Wei, default=0)


class Freeze(Base):
    """An admin's freeze or unfreeze of a participant, effective from a block: the ledger
    rebuilt from chain data applies each event under the freezes in force at its block."""

    __tablename__ = "freezes"

    id: Mapped[BigPK]
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"), index=True)
    frozen: Mapped[bool] = mapped_column(Boolean)
    effective_block: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[CreatedAt]
