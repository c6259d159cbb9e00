"""Queries for participants and the payloads signed for their wallets."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg
from asyncpg import Record
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import distinct_on, insert
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.db import StatementPool
from backend.models import (
    Freeze,
    PayloadKind,
    PayloadStatus,
    PendingEvent,
    Retopup,
    Transaction,
    User,
    UserBalance,
    UserRole,
    UserStatus,
)


async def by_wallet(session: AsyncSession, wallet: str, *, lock: bool = False) -> User | None:
    query = select(User).where(User.wallet == wallet)
    if lock:
        query = query.with_for_update()
    return await session.scalar(query)


async def by_id(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)


async def by_ids(session: AsyncSession, ids: Iterable[int]) -> list[User]:
    wanted = set(ids)
    if not wanted:
        return []
    return list(await session.scalars(select(User).where(User.id.in_(wanted))))


async def company_id(session: AsyncSession) -> int | None:
    cid = await session.scalar(select(User.id).where(User.role == UserRole.COMPANY))
    return None if cid is None else int(cid)


async def create_pending(session: AsyncSession, wallet: str, referrer_id: int | None) -> User:
    user = User(wallet=wallet, referrer_id=referrer_id, status=UserStatus.PENDING)
    session.add(user)
    await session.flush()
    session.add(UserBalance(user_id=user.id))
    return user


_REGISTER_WALLET = (
    "SELECT outcome, transaction_id, nonce, slot, deadline, held, first_fresh "
    "FROM autopool_register_wallet($1, $2, $3, $4, $5, $6, $7, $8)"
)
_NO_SLOT = "AP001"  # autopool_register_wallet found no slot (migration 0012)


@dataclass(frozen=True)
class WalletLease:
    """What `autopool_register_wallet` answered (migration 0012)."""

    outcome: str  # leased | general | too-many-leases | no-pool | waiting
    transaction_id: int | None = None
    nonce: int | None = None
    slot: int | None = None
    deadline: int | None = None
    held: int | None = None
    first_fresh: int | None = None


async def register_wallet(
    statements: StatementPool,
    *,
    wallet: str,
    referrer_wallet: str,
    client_ip: str | None,
    max_per_ip: int,
    lease_seconds: int,
    plan_hash: str,
    amount: int,
    placement_amount: int,
) -> WalletLease:
    """A registration in one statement, its own transaction (migration 0012): the sponsor and
    the plan in force checked, lease lock, the pending user locked (or created), the address's
    unpaid leases, payload row, slot (the lease rule), pending placement, all committed.
    Outcome `general` when the wallet is registered, frozen or holds a lease, the sponsor may
    not sponsor, or `plan_hash` is not in force (nothing written: the general path decides);
    a refusal writes nothing. Amounts travel as decimal strings (exact)."""
    try:
        row = await statements.fetchrow(
            _REGISTER_WALLET,
            wallet,
            referrer_wallet,
            client_ip,
            max_per_ip,
            lease_seconds,
            plan_hash,
            str(amount),
            str(placement_amount),
        )
    except asyncpg.PostgresError as exc:
        if getattr(exc, "sqlstate", None) != _NO_SLOT:
            raise
        detail = getattr(exc, "detail", None) or ""
        return WalletLease(str(exc.args[0]), first_fresh=int(detail) if detail else None)
    if row is None:
        raise RuntimeError("autopool_register_wallet returned no row")
    return WalletLease(*row)


async def store_signature_now(statements: StatementPool, payload_id: int, signature: str) -> None:
    """Record the signer's signature once (signing is deterministic: a retry gets the same),
    a statement of its own: the payload row is committed before the signer is asked."""
    await statements.fetchrow(
        "UPDATE transactions SET signature = $2 WHERE id = $1 AND signature IS NULL",
        payload_id,
        signature,
    )


async def ensure_user(session: AsyncSession, wallet: str, role: str = UserRole.USER) -> User:
    """The user with `wallet`, created (pending) if unknown, locked; safe under concurrency."""
    await session.execute(
        insert(User)
        .values(wallet=wallet, status=UserStatus.PENDING, role=role)
        .on_conflict_do_nothing()
    )
    user = await by_wallet(session, wallet, lock=True)
    if user is None:
        raise RuntimeError(f"user {wallet} vanished after its insert")
    await session.execute(insert(UserBalance).values(user_id=user.id).on_conflict_do_nothing())
    return user


async def payload_by_id(session: AsyncSession, payload_id: int) -> Transaction | None:
    return await session.get(Transaction, payload_id)


async def payload_by_nonce(session: AsyncSession, nonce: int) -> Transaction | None:
    return await session.scalar(
        select(Transaction).where(Transaction.nonce == nonce).with_for_update()
    )


async def expire_payload(session: AsyncSession, payload_id: int) -> None:
    await session.execute(
        update(Transaction)
        .where(Transaction.id == payload_id, Transaction.status == PayloadStatus.PENDING)
        .values(status=PayloadStatus.EXPIRED)
    )


async def live_payloads_from(
    session: AsyncSession, client_ip: str, confirmed_time: int, cap: int
) -> int:
    """Registration payloads asked from `client_ip` that are unpaid and may still execute,
    counted up to `cap` (the limit is all the caller needs: the cost stays bounded by it)."""
    live = (
        select(Transaction.id)
        .where(
            Transaction.client_ip == client_ip,
            Transaction.kind == PayloadKind.REGISTER,
            Transaction.status == PayloadStatus.PENDING,
            Transaction.deadline >= confirmed_time,
        )
        .limit(cap)
        .subquery()
    )
    count = await session.scalar(select(func.count()).select_from(live))
    return int(count or 0)


async def live_retopup(
    session: AsyncSession, user_id: int, confirmed_time: int
) -> Transaction | None:
    """The user's retopup payload that may still execute, if any."""
    return await session.scalar(
        select(Transaction)
        .where(
            Transaction.user_id == user_id,
            Transaction.kind == PayloadKind.RETOPUP,
            Transaction.status == PayloadStatus.PENDING,
            Transaction.deadline >= confirmed_time,
        )
        .order_by(Transaction.id.desc())
        .limit(1)
        .with_for_update()
    )


async def referrals(
    session: AsyncSession, user_id: int, after_id: int | None, limit: int
) -> list[User]:
    query = select(User).where(User.referrer_id == user_id).order_by(User.id).limit(limit)
    if after_id is not None:
        query = query.where(User.id > after_id)
    return list(await session.scalars(query))


async def referral_counts(session: AsyncSession, user_id: int) -> tuple[int, int]:
    """(direct referrals, of which active)."""
    row = (
        await session.execute(
            select(
                func.count(),
                func.count().filter(User.status == UserStatus.ACTIVE),
            ).where(User.referrer_id == user_id)
        )
    ).one()
    return int(row[0]), int(row[1])


async def children_of(session: AsyncSession, parent_ids: list[int], limit: int) -> list[User]:
    """Direct referrals of any of `parent_ids` (one breadth-first layer), at most `limit`."""
    if not parent_ids:
        return []
    return list(
        await session.scalars(
            select(User).where(User.referrer_id.in_(parent_ids)).order_by(User.id).limit(limit)
        )
    )


async def retopups_history(
    session: AsyncSession, user_id: int, *, before_id: int | None, limit: int
) -> list[Retopup]:
    query = (
        select(Retopup).where(Retopup.user_id == user_id).order_by(Retopup.id.desc()).limit(limit)
    )
    if before_id is not None:
        query = query.where(Retopup.id < before_id)
    return list(await session.scalars(query))


async def payloads_history(
    session: AsyncSession, user_id: int, *, before_id: int | None, limit: int, status: str | None
) -> list[Transaction]:
    query = (
        select(Transaction)
        .where(Transaction.user_id == user_id)
        .order_by(Transaction.id.desc())
        .limit(limit)
    )
    if before_id is not None:
        query = query.where(Transaction.id < before_id)
    if status:
        query = query.where(Transaction.status == status)
    return list(await session.scalars(query))


async def frozen_at(session: AsyncSession, ids: list[int], block: int) -> dict[int, bool]:
    """For the users among `ids` with any freeze decision: frozen or not at `block` (the
    latest decision effective at or before it). Users absent from the result were never
    frozen by then."""
    if not ids:
        return {}
    rows = await session.execute(
        select(Freeze.user_id, Freeze.frozen)
        .where(Freeze.user_id.in_(ids), Freeze.effective_block <= block)
        .order_by(Freeze.user_id, Freeze.effective_block.desc(), Freeze.id.desc())
        .ext(distinct_on(Freeze.user_id))
    )
    return {int(u): bool(f) for u, f in rows.all()}


async def add_freeze(
    session: AsyncSession, user_id: int, frozen: bool, block: int, actor: str, reason: str | None
) -> None:
    session.add(
        Freeze(user_id=user_id, frozen=frozen, effective_block=block, actor=actor, reason=reason)
    )


# Everything `GET /users/me` shows, in one statement (a read model over the ledger's tables:
# the participant, its sponsor, its balances by status and by type, referral counts, pool
# positions and a registration awaiting payment). Amounts travel as text: exact wei.
_ME = """
    SELECT u.id, u.wallet, u.status, u.is_frozen, u.has_retopup, s.wallet AS referrer,
      (SELECT jsonb_build_object(
          'pending', b.pending::text, 'held', b.held::text, 'reserved', b.reserved::text,
          'batched', b.batched::text, 'claimable', b.claimable::text, 'paid', b.paid::text,
          'reinvested', b.reinvested::text)
         FROM user_balances b WHERE b.user_id = u.id) AS balance,
      (SELECT coalesce(jsonb_agg(jsonb_build_array(k.kind, k.status, k.total)), '[]')
         FROM (SELECT r.kind, r.status, sum(r.amount)::text AS total FROM rewards r
               WHERE r.user_id = u.id GROUP BY r.kind, r.status) k) AS by_type,
      (SELECT count(*) FROM users c WHERE c.referrer_id = u.id) AS direct,
      (SELECT count(*) FROM users c WHERE c.referrer_id = u.id AND c.status = 'active')
         AS active,
      (SELECT coalesce(jsonb_agg(jsonb_build_object(
           'level', n.level, 'slot', n.slot, 'filled', n.filled, 'completed', n.completed,
           'reserved', n.reserved::text) ORDER BY n.level), '[]')
         FROM pool_nodes n WHERE n.user_id = u.id) AS positions,
      (SELECT jsonb_build_object('slot', l.slot, 'deadline', l.deadline,
           'nonce', t.nonce::text, 'signed', t.signature IS NOT NULL)
         FROM slot_leases l JOIN transactions t ON t.id = l.transaction_id
         WHERE l.user_id = u.id AND l.status = 'leased' LIMIT 1) AS pending,
      (SELECT coalesce(jsonb_agg(jsonb_build_object('name', p.name,
           'blockNumber', p.block_number, 'txHash', p.tx_hash, 'amount', p.amount::text)
           ORDER BY p.block_number, p.log_index), '[]')
         FROM pending_events p WHERE p.wallet = u.wallet) AS pending_events
    FROM users u LEFT JOIN users s ON s.id = u.referrer_id
    WHERE u.id = $1
    """


async def me_row(reads: StatementPool, user_id: int) -> Record | None:
    """The row behind `GET /users/me` (see `_ME`), or None for an unknown id."""
    return await reads.fetchrow(_ME, user_id)


async def pending_events_of(session: AsyncSession, wallet: str) -> list[PendingEvent]:
    """Events concerning `wallet` in blocks not final yet, oldest first."""
    return list(
        await session.scalars(
            select(PendingEvent)
            .where(PendingEvent.wallet == wallet)
            .order_by(PendingEvent.block_number, PendingEvent.log_index)
        )
    )
