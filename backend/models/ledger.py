"""Signed payloads (transactions), retopups and reward lines: the ledger."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

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
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from backend.models.base import Base, BigPK, CreatedAt, Hash32, Wei, one_of
from backend.plan.types import RewardStatus

# What the pool still owes: must equal the contract balance (DESIGN §4, conservation).
LIABILITY_STATUSES: tuple[str, ...] = tuple(RewardStatus.liabilities())


class PayloadKind(StrEnum):
    REGISTER = "register"
    RETOPUP = "retopup"


class PayloadStatus(StrEnum):
    PENDING = "pending"
    """Signed (or being signed) for the wallet; not seen on chain yet."""
    CONFIRMED = "confirmed"
    """Its event is final on chain."""
    EXPIRED = "expired"
    """Its deadline passed on a confirmed block: it can never execute."""


class Transaction(Base):
    """A payload for a participant's wallet (register / retopup), keyed by its EIP-712 nonce,
    and what became of it on chain. The row is written (and committed) before the signer is
    asked, so the signer can check it; `signature` is filled in once the signer answered."""

    __tablename__ = "transactions"
    __table_args__ = (
        CheckConstraint(one_of("kind", PayloadKind), name="kind"),
        CheckConstraint(one_of("status", PayloadStatus), name="status"),
    )

    id: Mapped[BigPK]
    kind: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"), index=True)
    nonce: Mapped[int] = mapped_column(Wei, unique=True)
    amount: Mapped[int] = mapped_column(Wei)
    deadline: Mapped[int] = mapped_column(BigInteger)
    plan_hash: Mapped[str] = mapped_column(Hash32)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    signature: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=PayloadStatus.PENDING)
    tx_hash: Mapped[str | None] = mapped_column(Hash32)
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    # Who asked for it: unpaid leases are limited per client address (lease squatting).
    client_ip: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[CreatedAt]


class Retopup(Base):
    __tablename__ = "retopups"

    id: Mapped[BigPK]
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"), index=True)
    amount: Mapped[int] = mapped_column(Wei)
    nonce: Mapped[int] = mapped_column(Wei, unique=True)
    plan_hash: Mapped[str] = mapped_column(Hash32)
    chain_event_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("chain_events.id"), unique=True
    )
    created_at: Mapped[CreatedAt]


class SurplusCredit(Base):
    """BNB the contract holds beyond what its events account for (its `surplus()`: forced by
    SELFDESTRUCT, sent before deployment, bounced back by a recipient), credited to the company
    as one reward line by the reconciliation job, with the reason it was found (docs/settlement.md
    "Surplus")."""

    __tablename__ = "surplus_credits"
    __table_args__ = (CheckConstraint("amount > 0", name="amount"),)

    id: Mapped[BigPK]
    amount: Mapped[int] = mapped_column(Wei)
    block_number: Mapped[int] = mapped_column(BigInteger)
    """The confirmed block at which the reconciliation job saw it."""
    contract_surplus: Mapped[int] = mapped_column(Wei)
    """The contract's `surplus()` at that block (credits not yet drawn included)."""
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[CreatedAt]


class Reward(Base):
    """One reward line. Lines are created from confirmed chain events, numbered within their
    event (`line_no`), so replaying an event can never create a line twice; the one exception
    is a surplus credit's single line (`surplus_credit_id`, unique)."""

    __tablename__ = "rewards"
    __table_args__ = (
        UniqueConstraint("chain_event_id", "line_no", name="uq_rewards_event_line"),
        UniqueConstraint("surplus_credit_id", name="uq_rewards_surplus_credit"),
        CheckConstraint(
            "(chain_event_id IS NULL) <> (surplus_credit_id IS NULL)", name="one_source"
        ),
        CheckConstraint(one_of("status", RewardStatus), name="status"),
        CheckConstraint("amount >= 0", name="amount"),
        Index("ix_rewards_status_user", "status", "user_id"),
        Index("ix_rewards_reserved_node", "level", "earner_slot", "status"),
        Index("ix_rewards_batch", "batch_id"),
        # A participant's own lines (balances by type, history pages newest first).
        Index("ix_rewards_user_id", "user_id", "id"),
    )

    id: Mapped[BigPK]
    chain_event_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("chain_events.id"))
    surplus_credit_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("surplus_credits.id")
    )
    line_no: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"))
    amount: Mapped[int] = mapped_column(Wei)
    kind: Mapped[str] = mapped_column(String(24))
    status: Mapped[str] = mapped_column(String(16))
    level: Mapped[int | None] = mapped_column(Integer)
    earner_slot: Mapped[int | None] = mapped_column(BigInteger)
    generation: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))  # registration|retopup|progression|surplus
    plan_hash: Mapped[str] = mapped_column(Hash32)
    batch_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("payout_batches.id"))
    created_at: Mapped[CreatedAt]
    settled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
