"""Payout batches: build (pending rewards → one line per recipient, marked batched), sign (by
the signer service), submit (a gas-paying sender; it cannot move funds without the signature).

A reward is paid at most once: the contract executes a batch id once, ever; rewards leave
`batched` only on the chain's PayoutExecuted / PayoutDeferred events (backend.payouts.confirm).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from eth_account import Account
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from web3 import AsyncWeb3

from backend.chain.contract import AutoPoolABI
from backend.core.context import PayloadSigner
from backend.core.db import LOCK_PAYOUT_BUILD, advisory_xact_lock, next_value
from backend.models import PayoutBatch, PayoutLine, Reward, User
from backend.payouts.errors import BatchNotFound, BatchWrongState, NothingToPay
from backend.pool.repository import confirmed_block_time
from backend.rewards.ledger import BalanceDeltas


async def build_batch(
    session: AsyncSession, *, max_recipients: int, deadline_seconds: int, created_by: str
) -> PayoutBatch:
    """Batch the pending rewards of up to `max_recipients` unfrozen participants, oldest first."""
    await advisory_xact_lock(session, LOCK_PAYOUT_BUILD)
    user_ids = list(
        await session.scalars(
            select(Reward.user_id)
            .join(User, User.id == Reward.user_id)
            .where(Reward.status == "pending", User.is_frozen.is_(False), Reward.amount > 0)
            .group_by(Reward.user_id)
            .order_by(func.min(Reward.id))
            .limit(max_recipients)
        )
    )
    if not user_ids:
        raise NothingToPay("no unfrozen participant has pending rewards")
    batch_id = await next_value(session, "payout_batch_id_seq")
    nonce = await next_value(session, "eip712_nonce_seq")
    batch = PayoutBatch(
        id=batch_id,
        status="built",
        total=0,
        recipient_count=0,
        nonce=nonce,
        deadline=max(int(time.time()), await confirmed_block_time(session)) + deadline_seconds,
        created_by=created_by,
    )
    session.add(batch)
    await session.flush()
    # The UPDATE's RETURNING is what was batched (rows settled meanwhile are simply not here).
    moved = await session.execute(
        update(Reward)
        .where(Reward.user_id.in_(user_ids), Reward.status == "pending")
        .values(status="batched", batch_id=batch_id)
        .returning(Reward.user_id, Reward.amount)
    )
    sums: dict[int, int] = {}
    for user_id, amount in moved.all():
        sums[user_id] = sums.get(user_id, 0) + int(amount)
    wallets = dict(
        (await session.execute(select(User.id, User.wallet).where(User.id.in_(sums)))).all()
    )
    deltas = BalanceDeltas()
    for position, user_id in enumerate(sorted(sums)):
        session.add(
            PayoutLine(
                batch_id=batch_id,
                position=position,
                user_id=user_id,
                recipient=wallets[user_id],
                amount=sums[user_id],
            )
        )
        deltas.move(user_id, "pending", "batched", sums[user_id])
    batch.total = sum(sums.values())
    batch.recipient_count = len(sums)
    await deltas.apply(session)
    await session.flush()
    return batch


async def batch_message(session: AsyncSession, batch: PayoutBatch) -> dict[str, Any]:
    lines = await session.scalars(
        select(PayoutLine).where(PayoutLine.batch_id == batch.id).order_by(PayoutLine.position)
    )
    return {
        "batchId": str(batch.id),
        "payouts": [{"recipient": ln.recipient, "amount": str(int(ln.amount))} for ln in lines],
        "nonce": str(batch.nonce),
        "deadline": batch.deadline,
    }


async def _get(session: AsyncSession, batch_id: int) -> PayoutBatch:
    batch = await session.get(PayoutBatch, batch_id, with_for_update=True)
    if batch is None:
        raise BatchNotFound(f"no payout batch {batch_id}")
    return batch


async def sign_batch(session: AsyncSession, signer: PayloadSigner, batch_id: int) -> PayoutBatch:
    """Have the signer sign the batch. Signing twice returns the first signature unchanged."""
    batch = await _get(session, batch_id)
    if batch.signature is not None:
        return batch
    if batch.status != "built":
        raise BatchWrongState(f"batch {batch_id} is {batch.status}")
    signed = await signer.sign("PayoutBatch", await batch_message(session, batch))
    batch.signature, batch.digest, batch.status = signed.signature, signed.digest, "signed"
    batch.updated_at = datetime.now(UTC)
    return batch


async def submit_batch(
    session: AsyncSession, w3: AsyncWeb3[Any], abi: AutoPoolABI, sender_key: str, batch_id: int
) -> PayoutBatch:
    """Send the signed batch from the settlement sender. The account nonce is fixed at the first
    submission, so a retry can only replace this transaction, never add a second one."""
    batch = await _get(session, batch_id)
    if batch.status not in ("signed", "submitted") or batch.signature is None:
        raise BatchWrongState(f"batch {batch_id} is {batch.status}")
    sender = Account.from_key(sender_key)
    if batch.account_nonce is None:
        batch.account_nonce = await w3.eth.get_transaction_count(sender.address, "pending")
        batch.gas_price = await w3.eth.gas_price
        batch.sender = sender.address
    data = abi.batch_data(await batch_message(session, batch), batch.signature)
    tx: dict[str, Any] = {
        "from": sender.address,
        "to": abi.address,
        "data": data,
        "value": 0,
        "nonce": batch.account_nonce,
        "gasPrice": int(batch.gas_price or 0),
        "chainId": await w3.eth.chain_id,
    }
    tx["gas"] = int(await w3.eth.estimate_gas(tx) * 12 // 10)  # type: ignore[arg-type]
    signed = sender.sign_transaction(tx)
    tx_hash = await w3.eth.send_raw_transaction(signed.raw_transaction)
    batch.tx_hash, batch.status = tx_hash.to_0x_hex(), "submitted"
    batch.attempts += 1
    batch.updated_at = datetime.now(UTC)
    return batch
