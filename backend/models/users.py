"""Participants and their cached balances."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, DateTime, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from backend.models.base import Address, Base, BigPK, CreatedAt, Wei


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("status IN ('pending','active')", name="status"),
        CheckConstraint("role IN ('user','admin','company')", name="role"),
    )

    id: Mapped[BigPK]
    wallet: Mapped[str] = mapped_column(Address, unique=True)  # EIP-55 checksum form
    referrer_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    role: Mapped[str] = mapped_column(String(16), default="user")
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
