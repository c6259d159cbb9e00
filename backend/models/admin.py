"""Sign-in nonces, refresh tokens, plan versions and the append-only audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from backend.models.base import Address, Base, BigPK, CreatedAt, Hash32


class AuthNonce(Base):
    """A single-use Sign-In with Ethereum nonce."""

    __tablename__ = "auth_nonces"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    wallet: Mapped[str] = mapped_column(Address, index=True)
    message: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[CreatedAt]


class RefreshToken(Base):
    """An opaque refresh token, stored hashed (SHA-256). Each refresh rotates it: the old row
    gets `rotated_at`, a new row of the same `family` is issued. Presenting a rotated token
    again (after a few seconds' grace) revokes the whole family: it was stolen or leaked."""

    __tablename__ = "refresh_tokens"

    id: Mapped[BigPK]
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family: Mapped[str] = mapped_column(String(64), index=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The session's absolute end: no rotation extends it.
    session_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[CreatedAt]


class RoleGrant(Base):
    """A staff role granted to a wallet by an admin (audited), on top of the configured ones."""

    __tablename__ = "role_grants"

    id: Mapped[BigPK]
    wallet: Mapped[str] = mapped_column(Address, index=True)
    role: Mapped[str] = mapped_column(String(16))
    granted_by: Mapped[str] = mapped_column(Address)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_by: Mapped[str | None] = mapped_column(Address)
    created_at: Mapped[CreatedAt]


class PlanVersion(Base):
    """A published compensation plan; `plan_hash` is what registrations carry on chain."""

    __tablename__ = "plan_versions"

    id: Mapped[BigPK]
    version: Mapped[int] = mapped_column(Integer, unique=True)
    plan_hash: Mapped[str] = mapped_column(Hash32, unique=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSONB)
    effective_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # New payloads carry this plan from this confirmed block on (None: from publication).
    effective_block: Mapped[int | None] = mapped_column(BigInteger)
    published_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[CreatedAt]


class AuditLog(Base):
    """Append-only: a trigger (migration 0001) rejects UPDATE and DELETE."""

    __tablename__ = "audit_logs"

    id: Mapped[BigPK]
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str | None] = mapped_column(String(128))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[CreatedAt]
