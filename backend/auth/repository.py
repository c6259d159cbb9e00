"""Queries for sign-in nonces, refresh tokens and staff role grants."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.models import AuthNonce, RefreshToken, RoleGrant


async def put_nonce(
    session: AsyncSession, nonce: str, wallet: str, message: str, expires_at: datetime
) -> None:
    session.add(AuthNonce(nonce=nonce, wallet=wallet, message=message, expires_at=expires_at))


async def take_nonce(session: AsyncSession, nonce: str) -> AuthNonce | None:
    """Delete the nonce and return what it was: one caller ever gets it."""
    row = (
        await session.execute(
            delete(AuthNonce)
            .where(AuthNonce.nonce == nonce)
            .returning(AuthNonce.nonce, AuthNonce.wallet, AuthNonce.message, AuthNonce.expires_at)
        )
    ).one_or_none()
    if row is None:
        return None
    return AuthNonce(nonce=row[0], wallet=row[1], message=row[2], expires_at=row[3])


async def purge_expired_nonces(session: AsyncSession, now: datetime) -> None:
    await session.execute(delete(AuthNonce).where(AuthNonce.expires_at < now))


async def add_refresh(session: AsyncSession, token: RefreshToken) -> None:
    session.add(token)


async def refresh_by_hash(session: AsyncSession, token_hash: str) -> RefreshToken | None:
    return await session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == token_hash).with_for_update()
    )


async def revoke_family(session: AsyncSession, family: str, now: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family == family, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def revoke_user_sessions(session: AsyncSession, user_id: int, now: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def active_grants(session: AsyncSession, wallet: str) -> list[str]:
    return list(
        await session.scalars(
            select(RoleGrant.role).where(RoleGrant.wallet == wallet, RoleGrant.revoked_at.is_(None))
        )
    )


async def active_grant(session: AsyncSession, wallet: str, role: str) -> RoleGrant | None:
    return await session.scalar(
        select(RoleGrant)
        .where(RoleGrant.wallet == wallet, RoleGrant.role == role, RoleGrant.revoked_at.is_(None))
        .with_for_update()
    )


async def add_grant(session: AsyncSession, wallet: str, role: str, granted_by: str) -> None:
    session.add(RoleGrant(wallet=wallet, role=role, granted_by=granted_by))
