"""Payout batches (one signed on-chain batch each) and their per-recipient lines."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from backend.models.base import Address, Base, CreatedAt, Hash32, Wei, one_of


class BatchStatus(StrEnum):
    """built → signed → submitted → executed; a batch whose deadline passed on a confirmed
    block without executing is expired (its rewards go back to pending under a new batch)."""

    BUILT = "built"
    SIGNED = "signed"
    SUBMITTED = "submitted"
    EXECUTED = "executed"
    EXPIRED = "expired"


class LineStatus(StrEnum):
    BATCHED = "batched"
    PAID = "paid"
    DEFERRED = "deferred"
    """The recipient refused the transfer: the amount is claimable from the contract."""
    RELEASED = "released"
    """Its batch expired: its rewards went back to pending."""


class PayoutBatch(Base):
    """`id` is the on-chain batch id: the contract executes it at most once, ever."""

    __tablename__ = "payout_batches"
    __table_args__ = (CheckConstraint(one_of("status", BatchStatus), name="status"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    status: Mapped[str] = mapped_column(String(16), default=BatchStatus.BUILT)
    total: Mapped[int] = mapped_column(Wei)
    recipient_count: Mapped[int] = mapped_column(Integer)
    nonce: Mapped[int] = mapped_column(Wei, unique=True)
    deadline: Mapped[int] = mapped_column(BigInteger)
    signature: Mapped[str | None] = mapped_column(Text)
    digest: Mapped[str | None] = mapped_column(Hash32)
    sender: Mapped[str | None] = mapped_column(Address)
    account_nonce: Mapped[int | None] = mapped_column(BigInteger)
    gas_price: Mapped[int | None] = mapped_column(Wei)
    tx_hash: Mapped[str | None] = mapped_column(Hash32)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    executed_block: Mapped[int | None] = mapped_column(BigInteger)
    paid_total: Mapped[int | None] = mapped_column(Wei)
    deferred_total: Mapped[int | None] = mapped_column(Wei)
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PayoutLine(Base):
    __tablename__ = "payout_lines"
    __table_args__ = (
        UniqueConstraint("batch_id", "user_id", name="uq_payout_lines_batch_user"),
        CheckConstraint(one_of("status", LineStatus), name="status"),
        # The listener finds a line by (batch, recipient) for every PayoutExecuted event.
        Index("ix_payout_lines_batch_recipient", "batch_id", "recipient"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    batch_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("payout_batches.id"))
    position: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"))
    recipient: Mapped[str] = mapped_column(Address)
    amount: Mapped[int] = mapped_column(Wei)
    status: Mapped[str] = mapped_column(String(16), default=LineStatus.BATCHED)
