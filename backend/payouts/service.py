"""Payout batches (DESIGN §3): build (pending rewards → one line per recipient, marked
batched), sign (by the signer service), submit (a gas-paying sender; it cannot move funds
without the signature), and record what the chain says became of each line.

A reward is paid at most once: the contract executes a batch id once, ever; rewards leave
`batched` only on the chain's PayoutExecuted / PayoutDeferred events (`record_payout`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eth_account import Account
from sqlalchemy.ext.asyncio import AsyncSession
from web3 import AsyncWeb3

from backend.chain.contract import AutoPoolABI
from backend.chain.errors import AlreadyKnown, classify
from backend.core.db import (
    EIP712_NONCE_SEQ,
    LOCK_PAYOUT_BUILD,
    PAYOUT_BATCH_ID_SEQ,
    advisory_xact_lock,
    next_value,
    unit_of_work,
)
from backend.core.wiring import PayloadSigner, Resources
from backend.models import BatchStatus, LineStatus, PayoutBatch, PayoutLine, RewardStatus
from backend.monitoring import service as monitoring
from backend.payouts import repository as repo
from backend.payouts.errors import BatchNotFound, BatchWrongState, NothingToPay
from backend.plan.errors import InconsistentState
from backend.rewards import service as rewards


async def build_batch(
    session: AsyncSession, *, max_recipients: int, deadline_seconds: int, created_by: str
) -> PayoutBatch:
    """Batch the pending rewards of up to `max_recipients` unfrozen participants, oldest first.
    A frozen participant's rewards are never batched and stay as they are."""
    await advisory_xact_lock(session, LOCK_PAYOUT_BUILD)
    user_ids = await repo.payable_recipients(session, max_recipients)
    if not user_ids:
        raise NothingToPay("no unfrozen participant has pending rewards")
    batch_id = await next_value(session, PAYOUT_BATCH_ID_SEQ)
    nonce = await next_value(session, EIP712_NONCE_SEQ)
    confirmed_time = await monitoring.confirmed_time(session)
    batch = PayoutBatch(
        id=batch_id,
        status=BatchStatus.BUILT,
        total=0,
        recipient_count=0,
        nonce=nonce,
        deadline=monitoring.deadline_after(confirmed_time, deadline_seconds),
        created_by=created_by,
    )
    session.add(batch)
    await session.flush()
    sums = await rewards.batch_pending(session, user_ids, batch_id)
    wallets = await repo.wallets(session, list(sums))
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
    batch.total = sum(sums.values())
    batch.recipient_count = len(sums)
    await session.flush()
    return batch


async def batch_message(session: AsyncSession, batch: PayoutBatch) -> dict[str, Any]:
    """The EIP-712 `PayoutBatch` message of `batch`, line for line."""
    return {
        "batchId": str(batch.id),
        "payouts": [
            {"recipient": ln.recipient, "amount": str(int(ln.amount))}
            for ln in await repo.lines_of(session, batch.id)
        ],
        "nonce": str(batch.nonce),
        "deadline": batch.deadline,
    }


async def _get(session: AsyncSession, batch_id: int) -> PayoutBatch:
    batch = await repo.batch_for_update(session, batch_id)
    if batch is None:
        raise BatchNotFound(f"no payout batch {batch_id}")
    return batch


async def sign_batch(session: AsyncSession, signer: PayloadSigner, batch_id: int) -> PayoutBatch:
    """Have the signer sign a `built` batch. Signing a `signed` batch again returns its
    signature unchanged; any other state is refused before the signer is asked."""
    batch = await _get(session, batch_id)
    if batch.status == BatchStatus.SIGNED and batch.signature is not None:
        return batch
    if batch.status != BatchStatus.BUILT:
        raise BatchWrongState(f"batch {batch_id} is {batch.status}", state=str(batch.status))
    signed = await signer.sign("PayoutBatch", await batch_message(session, batch))
    batch.signature, batch.digest = signed.signature, signed.digest
    batch.status, batch.updated_at = BatchStatus.SIGNED, datetime.now(UTC)
    return batch


async def submit_batch(
    session: AsyncSession, w3: AsyncWeb3[Any], abi: AutoPoolABI, sender_key: str, batch_id: int
) -> PayoutBatch:
    """Send the signed batch from the settlement sender. The account nonce is fixed at the first
    submission, so a retry can only replace this transaction, never add a second one. Chain
    refusals are raised typed (backend.chain.errors); "already known" means it was sent."""
    batch = await _get(session, batch_id)
    if batch.status not in (BatchStatus.SIGNED, BatchStatus.SUBMITTED) or batch.signature is None:
        raise BatchWrongState(f"batch {batch_id} is {batch.status}", state=str(batch.status))
    sender = Account.from_key(sender_key)
    data = abi.batch_data(await batch_message(session, batch), batch.signature)
    try:
        if batch.account_nonce is None:
            batch.account_nonce = await w3.eth.get_transaction_count(sender.address, "pending")
            batch.gas_price = await w3.eth.gas_price
            batch.sender = sender.address
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
        try:
            await w3.eth.send_raw_transaction(signed.raw_transaction)
        except Exception as exc:
            if not isinstance(classify(exc), AlreadyKnown):
                raise
    except Exception as exc:
        raise classify(exc) from exc
    batch.tx_hash, batch.status = signed.hash.to_0x_hex(), BatchStatus.SUBMITTED
    batch.attempts += 1
    batch.updated_at = datetime.now(UTC)
    return batch


@dataclass
class SettlementResult:
    batch_id: int | None
    recipients: int = 0
    total: int = 0
    tx_hash: str | None = None


async def settle_once(
    res: Resources,
    *,
    created_by: str = "worker",
    progress: Callable[[str], None] = lambda _msg: None,
) -> SettlementResult:
    """Finish any batch left built or signed; otherwise build a new one. Sign and submit it,
    each step in its own transaction, so a crash between steps leaves a batch that the next
    run picks up where it stopped."""
    settings = res.settings
    async with unit_of_work(res.sessions) as session:
        batch_id = await repo.oldest_unfinished(session)
    if batch_id is None:
        try:
            async with unit_of_work(res.sessions) as session:
                batch = await build_batch(
                    session,
                    max_recipients=settings.max_batch_recipients,
                    deadline_seconds=settings.batch_deadline_seconds,
                    created_by=created_by,
                )
                batch_id = batch.id
                progress(
                    f"built batch {batch.id}: {batch.recipient_count} recipients, {batch.total} wei"
                )
        except NothingToPay:
            progress("nothing to pay")
            return SettlementResult(None)
    async with unit_of_work(res.sessions) as session:
        batch = await sign_batch(session, res.signer, batch_id)
        progress(f"signed batch {batch_id}: digest {batch.digest}")
    async with unit_of_work(res.sessions) as session:
        batch = await submit_batch(
            session,
            res.w3,
            res.abi,
            settings.settlement_sender_key.get_secret_value(),
            batch_id,
        )
        progress(f"submitted batch {batch_id}: tx {batch.tx_hash}")
        return SettlementResult(batch.id, batch.recipient_count, int(batch.total), batch.tx_hash)


# ----------------------------------------------------------------------- for the ledger


async def record_payout(
    session: AsyncSession, batch_id: int, recipient: str, amount: int, *, deferred: bool
) -> None:
    """A final `PayoutExecuted` (paid) or `PayoutDeferred` (claimable) for one line of a batch.
    It must match the line exactly: anything else is refused and changes nothing."""
    line = await repo.line_of(session, batch_id, recipient)
    if line is None:
        raise InconsistentState(f"batch {batch_id} has no line for {recipient}")
    if line.status != LineStatus.BATCHED:
        raise InconsistentState(f"batch {batch_id} line {recipient} is already {line.status}")
    if int(line.amount) != amount:
        raise InconsistentState(
            f"batch {batch_id} line {recipient}: the chain paid {amount} wei, "
            f"the line is {line.amount} wei"
        )
    line.status = LineStatus.DEFERRED if deferred else LineStatus.PAID
    deltas = rewards.BalanceDeltas()
    moved = await rewards.flip_user_rewards(
        session,
        line.user_id,
        RewardStatus.BATCHED,
        RewardStatus.CLAIMABLE if deferred else RewardStatus.PAID,
        deltas,
        batch_id=batch_id,
    )
    if moved != amount:
        raise InconsistentState(f"batch {batch_id}: {moved} wei batched for {recipient}")
    await deltas.apply(session)


async def record_batch_executed(
    session: AsyncSession,
    batch_id: int,
    *,
    block_number: int,
    tx_hash: str,
    paid_total: int,
    deferred_total: int,
) -> None:
    batch = await repo.batch_for_update(session, batch_id)
    if batch is None:
        raise InconsistentState(f"unknown batch {batch_id} executed on chain")
    if paid_total + deferred_total != int(batch.total):
        raise InconsistentState(
            f"batch {batch_id} executed {paid_total + deferred_total} wei, built {batch.total}"
        )
    batch.status, batch.executed_block, batch.tx_hash = BatchStatus.EXECUTED, block_number, tx_hash
    batch.paid_total, batch.deferred_total = paid_total, deferred_total


# ----------------------------------------------------------------------- reads for the API


async def get_batch(session: AsyncSession, batch_id: int) -> tuple[PayoutBatch, list[PayoutLine]]:
    batch = await repo.batch_for_update(session, batch_id)
    if batch is None:
        raise BatchNotFound(f"no payout batch {batch_id}")
    return batch, await repo.lines_of(session, batch_id)


async def batches(
    session: AsyncSession, cursor: int | None, limit: int, status: str | None = None
) -> list[PayoutBatch]:
    return await repo.batches_page(session, cursor, limit, status)
