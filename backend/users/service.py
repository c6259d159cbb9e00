"""Registration: validate the referrer, lease the lowest free level-1 slot, have the signer sign
the payload and return it ready for the wallet (DESIGN §3)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.context import AppContext
from backend.core.db import LOCK_LEVEL1_LEASES, advisory_xact_lock, next_value
from backend.models import Placement, SlotLease, Transaction, User
from backend.plan.engine import parent_slot
from backend.pool import repository as pool_repo
from backend.users import repository as users
from backend.users.errors import (
    AlreadyRegistered,
    ReferrerFrozen,
    ReferrerNotActive,
    RegistrationPending,
    SelfReferral,
    SlotUnavailable,
    UnknownReferrer,
    UserFrozen,
)
from backend.users.schemas import RegistrationOut, RegistrationPayload, WalletTx

SLOT_RETRY_SECONDS = 5


async def next_nonce(session: AsyncSession) -> int:
    return await next_value(session, "eip712_nonce_seq")


def _out(ctx: AppContext, payload: dict[str, Any], signature: str) -> RegistrationOut:
    return RegistrationOut(
        payload=RegistrationPayload.model_validate(payload),
        signature=signature,
        deadline=int(payload["deadline"]),
        nonce=int(payload["nonce"]),
        tx=WalletTx(
            to=ctx.abi.address,
            data=ctx.abi.register_data(payload, signature),
            value=int(payload["amount"]),
            chainId=ctx.settings.chain_id,
        ),
    )


async def _validate_referrer(session: AsyncSession, wallet: str, referrer_wallet: str) -> User:
    if wallet == referrer_wallet:
        raise SelfReferral("a wallet cannot be its own referrer", wallet=wallet)
    referrer = await users.by_wallet(session, referrer_wallet)
    if referrer is None:
        raise UnknownReferrer(f"{referrer_wallet} is not registered", referrer=referrer_wallet)
    if referrer.status != "active":
        raise ReferrerNotActive(
            f"{referrer_wallet} has not completed its registration", referrer=referrer_wallet
        )
    if referrer.is_frozen:
        raise ReferrerFrozen(f"{referrer_wallet} is frozen and cannot sponsor")
    return referrer


async def _lease_slot(session: AsyncSession, confirmed_time: int) -> tuple[int, SlotLease | None]:
    """The lowest free level-1 slot whose parent is confirmed, and its lease row if it has one.

    Freed slots are always below the high-water mark, so the lowest lapsed lease (if any) is
    the lowest free slot; otherwise the next never-used slot, once its parent is confirmed."""
    lapsed = await pool_repo.lowest_reusable_lease(session, confirmed_time)
    if lapsed is not None:
        return lapsed.slot, lapsed
    pool = await pool_repo.pool_for_update(session, 1)
    if pool is None:
        raise SlotUnavailable("the pool is not initialised (no company root)")
    slot = pool.next_slot
    if not await pool_repo.node_exists(session, 1, parent_slot(slot)):
        raise SlotUnavailable(
            f"slot {slot} waits for its parent slot {parent_slot(slot)} to be confirmed",
            retry_after=SLOT_RETRY_SECONDS,
        )
    pool.next_slot = slot + 1
    return slot, None


async def _release_lapsed(session: AsyncSession, lease: SlotLease) -> None:
    """Mark a lapsed lease's slot free and its payload's pending rows expired."""
    lease.status = "free"
    lease.updated_at = func.now()
    if lease.transaction_id is not None:
        tx = await session.get(Transaction, lease.transaction_id, with_for_update=True)
        if tx is not None and tx.status == "pending":
            tx.status = "expired"
            placement = await session.scalar(
                select(Placement).where(Placement.transaction_id == tx.id).with_for_update()
            )
            if placement is not None and placement.status == "pending":
                placement.status = "expired"


async def register(
    ctx: AppContext, session: AsyncSession, wallet: str, referrer_wallet: str
) -> RegistrationOut:
    """Lease a slot and return the signed registration for `wallet`.

    Idempotent: while a lease is live, the same request returns the same signed payload.
    Every check runs before anything is written; a refusal writes nothing."""
    await advisory_xact_lock(session, LOCK_LEVEL1_LEASES)
    confirmed_time = await pool_repo.confirmed_block_time(session)

    user = await users.by_wallet(session, wallet, lock=True)
    if user is not None and user.status == "active":
        raise AlreadyRegistered(f"{wallet} is already registered", wallet=wallet)
    if user is not None and user.is_frozen:
        raise UserFrozen(f"{wallet} is frozen")
    referrer = await _validate_referrer(session, wallet, referrer_wallet)

    if user is not None:
        live = await pool_repo.live_lease_of_user(session, user.id)
        if live is not None and live.deadline >= confirmed_time:
            # Its payload may still execute: never lease a second slot beside it.
            if live.referrer_id == referrer.id and live.deadline > max(time.time(), confirmed_time):
                tx = await session.get(Transaction, live.transaction_id)
                assert tx is not None
                return _out(ctx, tx.payload, tx.signature)  # a wallet's retry: same payload
            raise RegistrationPending(
                f"{wallet} has a registration pending until {live.deadline}",
                deadline=live.deadline,
            )
        if live is not None:
            await _release_lapsed(session, live)
            await session.flush()

    slot, lapsed = await _lease_slot(session, confirmed_time)
    nonce = await next_nonce(session)
    # The contract compares with block time: never start from a clock behind the chain's.
    deadline = max(int(time.time()), confirmed_time) + ctx.settings.lease_seconds
    amount = ctx.plan.entry_price
    payload: dict[str, Any] = {
        "user": wallet,
        "referrer": referrer.wallet,
        "slot": str(slot),
        "amount": str(amount),
        "planHash": ctx.plan_hash,
        "nonce": str(nonce),
        "deadline": deadline,
    }
    signed = await ctx.signer.sign("Registration", payload)

    if lapsed is not None:
        await _release_lapsed(session, lapsed)
    if user is None:
        user = await users.create_pending(session, wallet, referrer.id)
    else:
        user.referrer_id = referrer.id
    tx = Transaction(
        kind="register",
        user_id=user.id,
        nonce=nonce,
        amount=amount,
        deadline=deadline,
        plan_hash=ctx.plan_hash,
        payload=payload,
        signature=signed.signature,
    )
    session.add(tx)
    await session.flush()
    if lapsed is not None:
        lapsed.user_id, lapsed.referrer_id = user.id, referrer.id
        lapsed.transaction_id, lapsed.deadline, lapsed.status = tx.id, deadline, "leased"
    else:
        session.add(
            SlotLease(
                level=1,
                slot=slot,
                user_id=user.id,
                referrer_id=referrer.id,
                transaction_id=tx.id,
                deadline=deadline,
                status="leased",
            )
        )
    session.add(
        Placement(
            user_id=user.id,
            level=1,
            slot=slot,
            amount=amount - ctx.plan.direct_amount(amount),
            source="registration",
            status="pending",
            plan_hash=ctx.plan_hash,
            transaction_id=tx.id,
        )
    )
    await session.flush()
    return _out(ctx, payload, signed.signature)
