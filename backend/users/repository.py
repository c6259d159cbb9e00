"""Queries for participants."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backend.models import User, UserBalance


async def by_wallet(session: AsyncSession, wallet: str, *, lock: bool = False) -> User | None:
    query = select(User).where(User.wallet == wallet)
    if lock:
        query = query.with_for_update()
    return await session.scalar(query)


async def by_id(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)


async def create_pending(session: AsyncSession, wallet: str, referrer_id: int | None) -> User:
    user = User(wallet=wallet, referrer_id=referrer_id, status="pending")
    session.add(user)
    await session.flush()
    session.add(UserBalance(user_id=user.id))
    return user


async def ensure_user(session: AsyncSession, wallet: str, role: str = "user") -> User:
    """The user with `wallet`, created (pending) if unknown; safe under concurrency."""
    await session.execute(
        insert(User).values(wallet=wallet, status="pending", role=role).on_conflict_do_nothing()
    )
    user = await by_wallet(session, wallet, lock=True)
    assert user is not None
    await session.execute(insert(UserBalance).values(user_id=user.id).on_conflict_do_nothing())
    return user


async def set_referrer(session: AsyncSession, user_id: int, referrer_id: int) -> None:
    await session.execute(update(User).where(User.id == user_id).values(referrer_id=referrer_id))
