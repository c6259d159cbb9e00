"""The settlement sender's durable state: each sending account's nonce sequence and every
transaction attempt, stored before it is broadcast (docs/settlement.md)."""

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
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from backend.models.base import Address, Base, CreatedAt, Hash32, Wei, one_of


class AttemptStatus(StrEnum):
    """prepared (stored, maybe not yet sent) → sent → mined | reverted; an attempt of a nonce
    that another attempt of ours filled is `replaced`; one whose nonce another program used
    is `foreign`; `underpriced` was refused as a replacement and waits for the next bump."""

    PREPARED = "prepared"
    SENT = "sent"
    UNDERPRICED = "underpriced"
    MINED = "mined"
    REVERTED = "reverted"
    REPLACED = "replaced"
    FOREIGN = "foreign"

    @classmethod
    def open(cls) -> tuple[AttemptStatus, ...]:
        """Statuses of an attempt whose nonce is not yet known to be used."""
        return (cls.PREPARED, cls.SENT, cls.UNDERPRICED)


class SenderAccount(Base):
    """One gas-paying account. `next_nonce` is taken under this row's lock in the same
    transaction that stores the attempt using it, so nonces are gapless and never reused."""

    __tablename__ = "sender_accounts"

    address: Mapped[str] = mapped_column(Address, primary_key=True)
    chain_id: Mapped[int] = mapped_column(BigInteger)
    next_nonce: Mapped[int] = mapped_column(BigInteger)
    halted_reason: Mapped[str | None] = mapped_column(Text)
    """Why sending from this account stopped (foreign nonce use, insufficient funds)."""
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class TxAttempt(Base):
    """One signed transaction for a payout batch. The raw bytes are what a restart re-sends."""

    __tablename__ = "tx_attempts"
    __table_args__ = (
        CheckConstraint(one_of("status", AttemptStatus), name="status"),
        Index("ix_tx_attempts_sender_nonce", "sender", "account_nonce"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    batch_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("payout_batches.id"), index=True)
    sender: Mapped[str] = mapped_column(Address, ForeignKey("sender_accounts.address"))
    account_nonce: Mapped[int] = mapped_column(BigInteger)
    gas_price: Mapped[int] = mapped_column(Wei)
    gas_limit: Mapped[int] = mapped_column(BigInteger)
    raw_tx: Mapped[str] = mapped_column(Text)
    tx_hash: Mapped[str] = mapped_column(Hash32, unique=True)
    status: Mapped[str] = mapped_column(String(16), default=AttemptStatus.PREPARED)
    error: Mapped[str | None] = mapped_column(Text)
    sent_block: Mapped[int | None] = mapped_column(BigInteger)
    mined_block: Mapped[int | None] = mapped_column(BigInteger)
    gas_used: Mapped[int | None] = mapped_column(BigInteger)
    broadcasts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ReconciliationReport(Base):
    """One run of the reconciliation job: the contract's balance against the ledger's
    liabilities by bucket, the contract's own surplus view, and each recipient's on-chain
    payouts against its settled rewards. `difference` = balance − surplus − liabilities."""

    __tablename__ = "reconciliation_reports"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    block_number: Mapped[int] = mapped_column(BigInteger)
    contract_balance: Mapped[int] = mapped_column(Wei)
    liabilities: Mapped[int] = mapped_column(Wei)
    buckets: Mapped[dict[str, str]] = mapped_column(JSONB)
    surplus: Mapped[int] = mapped_column(Wei)
    deficit: Mapped[int] = mapped_column(Wei)
    difference: Mapped[int] = mapped_column(Wei)
    """Signed: positive is unexplained excess, negative a deficit (a NUMERIC allows either)."""
    recipient_mismatches: Mapped[list[dict[str, str]]] = mapped_column(JSONB)
    surplus_credited: Mapped[int] = mapped_column(Wei, default=0)
    ok: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[CreatedAt]


class TransferStatus(StrEnum):
    PROPOSED = "proposed"
    APPROVED = "approved"
    """M approvals reached: handed to the settlement worker as a company payout."""


class TreasuryTransfer(Base):
    """A transfer of the company's pending rewards out of the contract, executed as a company
    payout once `treasury_required_approvals` of the configured approvers agreed."""

    __tablename__ = "treasury_transfers"
    __table_args__ = (
        CheckConstraint(one_of("status", TransferStatus), name="status"),
        CheckConstraint("amount > 0", name="amount"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    amount: Mapped[int] = mapped_column(Wei)
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=TransferStatus.PROPOSED)
    proposed_by: Mapped[str] = mapped_column(Address)
    approvals: Mapped[list[str]] = mapped_column(JSONB)
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
