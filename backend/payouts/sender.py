"""The settlement sender: one account's nonce sequence, durable attempts, receipts and fee
bumps (DESIGN §3, docs/settlement.md).

Guarantees:
- Every attempt (raw signed transaction, hash, account nonce, gas price) is committed to
  PostgreSQL before it is broadcast; a restart re-sends the identical bytes, never a new
  transaction.
- A batch holds one account nonce at a time. A replacement reuses it with a gas price at least
  12.5% higher; a batch gets a new nonce only once its old nonce is known used on chain by its
  own reverted attempt. So a stuck transaction is never doubled by a second one for the same
  batch under another nonce.
- Nonces come from `sender_accounts.next_nonce` under its row lock, in the transaction that
  stores the attempt: gapless and never handed out twice. The chain's `latest` and `pending`
  counts are compared with it at every run; a nonce used by another program halts the account
  and is reported, never skipped silently.
- One sender loop per account at a time: a session-level advisory lock, released by the
  server if the process dies.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import HexStr
from prometheus_client import Counter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from web3 import AsyncWeb3
from web3.exceptions import TransactionNotFound

from backend.chain.errors import (
    AlreadyKnown,
    ChainError,
    InsufficientFunds,
    NonceTooLow,
    ReplacementUnderpriced,
    Underpriced,
    classify,
)
from backend.core.db import unit_of_work
from backend.core.logging import log
from backend.core.settings import Settings
from backend.core.wiring import Resources
from backend.models import AttemptStatus, BatchStatus, PayoutBatch, SenderAccount, TxAttempt
from backend.payouts import repository as repo
from backend.payouts.failpoints import failpoint
from backend.payouts.fees import FeePolicy, GasModel
from backend.payouts.messages import batch_message

SENDER_HALTED = Counter(
    "autopool_settlement_sender_halted_total", "Sender accounts halted, by reason", ["reason"]
)
ATTEMPTS = Counter("autopool_settlement_attempts_total", "Transaction attempts stored", ["kind"])


def gas_model(settings: Settings) -> GasModel:
    return GasModel(
        ceiling=settings.settlement_gas_ceiling,
        base=settings.settlement_batch_base_gas,
        line=settings.settlement_line_gas,
        new_account=settings.settlement_new_account_gas,
        hostile_line=settings.settlement_hostile_line_gas,
        hostile_reserve_bps=settings.settlement_hostile_reserve_bps,
    )


def fee_policy(settings: Settings) -> FeePolicy:
    return FeePolicy(
        bump_bps=settings.settlement_bump_bps,
        max_gas_price=settings.settlement_max_gas_price_wei,
        min_gas_price=settings.settlement_min_gas_price_wei,
    )


@dataclass
class SenderReport:
    """What one run of the sender did."""

    sender: str = ""
    busy: bool = False
    halted: str | None = None
    blocked: str | None = None
    submitted: list[int] = field(default_factory=list)
    bumped: list[int] = field(default_factory=list)
    mined: list[int] = field(default_factory=list)
    reverted: list[int] = field(default_factory=list)
    foreign_nonces: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    """Batches whose mined transaction a reorg dropped: sent again on the same nonce."""


def sender_lock_key(address: str) -> int:
    """An advisory-lock key per sending account (fits a signed 64-bit integer)."""
    digest = int.from_bytes(hashlib.sha256(address.lower().encode()).digest()[:4], "big")
    return (0x4150_2000 << 32) | digest


@asynccontextmanager
async def sender_lock(engine: AsyncEngine, address: str) -> AsyncIterator[bool]:
    """Hold the account's sender lock for the block (True), or yield False if another worker
    holds it. The lock lives on its own connection, so it spans the run's many transactions
    and dies with the process."""
    key = sender_lock_key(address)
    async with engine.connect() as conn:
        got = bool(await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}))
        await conn.commit()
        try:
            yield got
        finally:
            if got:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                await conn.commit()


async def _receipt(w3: AsyncWeb3[Any], tx_hash: str) -> Any:
    try:
        return await w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
    except TransactionNotFound:
        return None


def _halt(account: SenderAccount, reason: str) -> None:
    if account.halted_reason is None:
        account.halted_reason = reason
        account.updated_at = datetime.now(UTC)
        SENDER_HALTED.labels(reason.split(":")[0]).inc()
        log.error("settlement sender halted", sender=account.address, reason=reason)


async def reconcile(res: Resources, address: str, report: SenderReport) -> int:
    """Compare the account's nonce with the chain's `latest` and `pending` counts; create the
    account's row on first use. Returns `latest`."""
    w3 = res.w3
    latest = int(await w3.eth.get_transaction_count(address, "latest"))  # type: ignore[arg-type]
    pending = int(await w3.eth.get_transaction_count(address, "pending"))  # type: ignore[arg-type]
    async with unit_of_work(res.sessions) as s:
        account = await repo.sender_for_update(s, address)
        if account is None:
            account = SenderAccount(
                address=address, chain_id=res.settings.chain_id, next_nonce=latest
            )
            s.add(account)
            if pending > latest:
                _halt(account, f"foreign-pending: {pending - latest} unrecorded pending tx(s)")
        elif latest > account.next_nonce:
            report.foreign_nonces.extend(range(account.next_nonce, latest))
            _halt(
                account,
                f"foreign-nonce: nonces {account.next_nonce}..{latest - 1} used by another program",
            )
            account.next_nonce = latest
        elif pending > account.next_nonce:
            _halt(
                account,
                f"foreign-pending: pending count {pending} beyond our next nonce "
                f"{account.next_nonce}",
            )
        report.halted = account.halted_reason
    return latest


async def _reopen_batch(session: AsyncSession, batch_id: int, nonce: int) -> None:
    """The batch's nonce was used without executing it: it may be sent again, under a new
    nonce (the contract still executes a batch id at most once)."""
    batch = await repo.batch_for_update(session, batch_id)
    if batch is not None and batch.status == BatchStatus.SUBMITTED and batch.account_nonce == nonce:
        batch.status, batch.account_nonce = BatchStatus.SIGNED, None
        batch.updated_at = datetime.now(UTC)


async def _reopen_dropped(
    res: Resources, session: AsyncSession, address: str, latest: int, report: SenderReport
) -> None:
    """A reorg inside the non-final window can drop the block that held one of our mined (or
    reverted) transactions: the chain's `latest` count falls back to its nonce and its receipt
    is gone. Its identical bytes go back to `prepared` and are broadcast again, so the nonce is
    filled by the same transaction; otherwise every later nonce would wait behind the gap
    forever. (The contract still executes a batch id at most once.)"""
    now = datetime.now(UTC)
    for attempt in await repo.closed_attempts_from(session, address, latest):
        if await _receipt(res.w3, attempt.tx_hash) is not None:
            continue  # mined again since `latest` was read
        log.warning(
            "settlement transaction dropped by a reorg: sent again",
            batch=attempt.batch_id,
            nonce=attempt.account_nonce,
            tx=attempt.tx_hash,
        )
        attempt.status, attempt.mined_block, attempt.gas_used = AttemptStatus.PREPARED, None, None
        attempt.updated_at = now
        report.dropped.append(attempt.batch_id)


async def close_nonces(res: Resources, address: str, latest: int, report: SenderReport) -> None:
    """Settle each open nonce the chain may have used: one of our attempts mined it (an
    outcome: mined or reverted; the others are `replaced`), or none did while the chain's
    `latest` count is past it (another program used it: reported, the account halted)."""
    async with unit_of_work(res.sessions) as s:
        account = await repo.sender_for_update(s, address)
        assert account is not None
        await _reopen_dropped(res, s, address, latest, report)
        by_nonce: dict[int, list[TxAttempt]] = {}
        for attempt in await repo.open_attempts(s, address):
            by_nonce.setdefault(attempt.account_nonce, []).append(attempt)
        now = datetime.now(UTC)
        for nonce, attempts in by_nonce.items():
            winner: TxAttempt | None = None
            receipt: Any = None
            for attempt in reversed(attempts):  # the newest is the likeliest to be mined
                receipt = await _receipt(res.w3, attempt.tx_hash)
                if receipt is not None:
                    winner = attempt
                    break
            if winner is None:
                if nonce < latest:
                    for attempt in attempts:
                        attempt.status, attempt.updated_at = AttemptStatus.FOREIGN, now
                    await _reopen_batch(s, attempts[-1].batch_id, nonce)
                    report.foreign_nonces.append(nonce)
                    _halt(account, f"foreign-nonce: nonce {nonce} used by another program")
                continue
            failpoint("after_receipt")
            ok = int(receipt["status"]) == 1
            winner.status = AttemptStatus.MINED if ok else AttemptStatus.REVERTED
            winner.mined_block, winner.gas_used = receipt["blockNumber"], receipt["gasUsed"]
            winner.updated_at = now
            for attempt in attempts:
                if attempt is not winner:
                    attempt.status, attempt.updated_at = AttemptStatus.REPLACED, now
            if ok:
                report.mined.append(winner.batch_id)
            else:
                report.reverted.append(winner.batch_id)
                log.warning("payout batch transaction reverted", batch=winner.batch_id, nonce=nonce)
                await _reopen_batch(s, winner.batch_id, nonce)
        report.halted = account.halted_reason


async def broadcast(res: Resources, attempt_id: int) -> None:
    """Send a stored attempt's raw bytes (again). What the node answers is recorded: `already
    known` is success; `nonce too low` is left to `close_nonces` (ours mined, or foreign);
    underpriced waits for the next bump; insufficient funds halts the account."""
    async with res.sessions() as s:
        attempt = await s.get(TxAttempt, attempt_id)
        if attempt is None or attempt.status not in AttemptStatus.open():
            return
        raw, sender = attempt.raw_tx, attempt.sender
    error: ChainError | None = None
    try:
        await res.w3.eth.send_raw_transaction(HexStr(raw))
    except Exception as exc:
        error = classify(exc)
        if isinstance(error, AlreadyKnown):
            error = None
    failpoint("after_broadcast")
    block = int(await res.w3.eth.block_number)
    async with unit_of_work(res.sessions) as s:
        attempt = await repo.attempt_for_update(s, attempt_id)
        if attempt is None or attempt.status not in AttemptStatus.open():
            return
        attempt.updated_at = datetime.now(UTC)
        if error is None:
            attempt.status = AttemptStatus.SENT
            attempt.broadcasts += 1
            if attempt.sent_block is None:
                attempt.sent_block = block
            attempt.error = None
            return
        attempt.error = f"{type(error).__name__}: {error.message}"[:2000]
        if isinstance(error, ReplacementUnderpriced | Underpriced):
            attempt.status = AttemptStatus.UNDERPRICED
        elif isinstance(error, InsufficientFunds):
            account = await repo.sender_for_update(s, sender)
            assert account is not None
            _halt(account, f"insufficient-funds: {error.message}")
        elif not isinstance(error, NonceTooLow):
            log.warning("broadcast refused", attempt=attempt_id, error=attempt.error)


async def _batch_data(session: AsyncSession, res: Resources, batch: PayoutBatch) -> str:
    assert batch.signature is not None
    return res.abi.batch_data(await batch_message(session, batch), batch.signature)


def _sign(account: LocalAccount, tx: dict[str, Any]) -> tuple[str, str]:
    signed = account.sign_transaction(tx)
    return signed.raw_transaction.to_0x_hex(), signed.hash.to_0x_hex()


async def submit(res: Resources, account: LocalAccount, batch_id: int) -> int | None:
    """Give a signed batch its account nonce and first attempt, stored, then broadcast it.
    Returns the attempt id, or None when the batch is not to be sent now (the node's estimate
    says it would revert: executed already, past its deadline, paused...)."""
    settings, w3 = res.settings, res.w3
    async with unit_of_work(res.sessions) as s:
        sender = await repo.sender_for_update(s, account.address)
        batch = await repo.batch_for_update(s, batch_id)
        if sender is None or sender.halted_reason is not None or batch is None:
            return None
        if batch.status != BatchStatus.SIGNED or batch.account_nonce is not None:
            return None
        if batch.signature is None:
            return None
        if await repo.reverted_count(s, batch_id) >= settings.settlement_max_reverts_per_batch:
            log.error("payout batch reverted too often; waiting for an operator", batch=batch_id)
            return None
        tx: dict[str, Any] = {
            "from": account.address,
            "to": res.abi.address,
            "data": await _batch_data(s, res, batch),
            "value": 0,
            "chainId": settings.chain_id,
        }
        try:
            estimate = int(await w3.eth.estimate_gas(tx))  # type: ignore[arg-type]
        except Exception as exc:
            error = classify(exc)
            log.warning(
                "payout batch not sent: the node says it would fail",
                batch=batch_id,
                error=type(error).__name__,
                reason=getattr(error, "error", None),
            )
            return None
        model = gas_model(settings)
        if estimate + model.hostile_room(batch.recipient_count) > model.ceiling:
            log.error("payout batch over the gas ceiling; left to expire", batch=batch_id)
            return None
        price = fee_policy(settings).initial(int(await w3.eth.gas_price))
        nonce = sender.next_nonce
        sender.next_nonce, sender.updated_at = nonce + 1, datetime.now(UTC)
        tx.update(nonce=nonce, gas=model.gas_limit(estimate, batch.recipient_count), gasPrice=price)
        raw, tx_hash = _sign(account, tx)
        attempt = TxAttempt(
            batch_id=batch_id,
            sender=account.address,
            account_nonce=nonce,
            gas_price=price,
            gas_limit=tx["gas"],
            raw_tx=raw,
            tx_hash=tx_hash,
            status=AttemptStatus.PREPARED,
            broadcasts=0,
        )
        s.add(attempt)
        batch.status, batch.sender, batch.account_nonce = (
            BatchStatus.SUBMITTED,
            account.address,
            nonce,
        )
        batch.gas_price, batch.tx_hash = price, tx_hash
        batch.attempts += 1
        batch.updated_at = datetime.now(UTC)
        await s.flush()
        attempt_id = attempt.id
    ATTEMPTS.labels("first").inc()
    failpoint("after_attempt_stored")
    await broadcast(res, attempt_id)
    return attempt_id


async def bump(res: Resources, account: LocalAccount, nonce: int) -> int | None:
    """Replace the pending attempt of `nonce` by the same transaction at a higher gas price
    (stored first, every attempt kept). At the price cap, the newest attempt is sent again."""
    policy = fee_policy(res.settings)
    node_price = int(await res.w3.eth.gas_price)
    block = int(await res.w3.eth.block_number)
    async with unit_of_work(res.sessions) as s:
        await repo.sender_for_update(s, account.address)
        attempts = await repo.attempts_of_nonce(s, account.address, nonce)
        if not attempts or attempts[-1].status not in AttemptStatus.open():
            return None
        top = attempts[-1]
        price = policy.bumped(int(top.gas_price), node_price)
        if price is None:
            top.sent_block, top.updated_at = block, datetime.now(UTC)  # wait another round
            resend: int | None = top.id
            new_id = None
        else:
            batch = await repo.batch_for_update(s, top.batch_id)
            assert batch is not None
            tx = {
                "from": account.address,
                "to": res.abi.address,
                "data": await _batch_data(s, res, batch),
                "value": 0,
                "chainId": res.settings.chain_id,
                "nonce": nonce,
                "gas": top.gas_limit,
                "gasPrice": price,
            }
            raw, tx_hash = _sign(account, tx)
            attempt = TxAttempt(
                batch_id=top.batch_id,
                sender=account.address,
                account_nonce=nonce,
                gas_price=price,
                gas_limit=top.gas_limit,
                raw_tx=raw,
                tx_hash=tx_hash,
                status=AttemptStatus.PREPARED,
                broadcasts=0,
            )
            s.add(attempt)
            if batch.account_nonce == nonce:
                batch.gas_price, batch.tx_hash = price, tx_hash
                batch.attempts += 1
                batch.updated_at = datetime.now(UTC)
            await s.flush()
            new_id, resend = attempt.id, None
    if new_id is not None:
        ATTEMPTS.labels("bump").inc()
        failpoint("after_attempt_stored")
        await broadcast(res, new_id)
        return new_id
    if resend is not None:
        await broadcast(res, resend)
    return None


async def track(res: Resources, account: LocalAccount, report: SenderReport) -> None:
    """For each open nonce: send a stored but unsent attempt (a restart's first move), or bump
    one that waited `settlement_bump_after_blocks` blocks (or was refused as underpriced)."""
    block = int(await res.w3.eth.block_number)
    async with res.sessions() as s:
        tops: dict[int, TxAttempt] = {}
        for attempt in await repo.open_attempts(s, account.address):
            tops[attempt.account_nonce] = attempt  # ordered by id: the newest wins
    for nonce, top in sorted(tops.items()):
        if top.status == AttemptStatus.PREPARED:
            await broadcast(res, top.id)
            continue
        due = top.status == AttemptStatus.UNDERPRICED or (
            top.sent_block is not None
            and block >= top.sent_block + res.settings.settlement_bump_after_blocks
        )
        if due and await bump(res, account, nonce) is not None:
            report.bumped.append(top.batch_id)


def sender_account(settings: Settings) -> LocalAccount:
    key = settings.settlement_sender_key.get_secret_value()
    if not key:
        raise RuntimeError("set AUTOPOOL_SETTLEMENT_SENDER_KEY")
    acct: LocalAccount = Account.from_key(key)
    return acct


async def run_sender(res: Resources, *, blocked: str | None) -> SenderReport:
    """One run of the account's sender: reconcile with the chain, settle mined nonces, submit
    signed batches (unless `blocked` says why not), re-send and bump what is pending."""
    account = sender_account(res.settings)
    report = SenderReport(sender=account.address, blocked=blocked)
    async with sender_lock(res.engine, account.address) as held:
        if not held:
            report.busy = True
            return report
        latest = await reconcile(res, account.address, report)
        await close_nonces(res, account.address, latest, report)
        if report.halted is not None or blocked is not None:
            return report
        async with res.sessions() as s:
            sendable = await repo.sendable_batches(s, 100)
        for batch_id in sendable:
            if await submit(res, account, batch_id) is not None:
                report.submitted.append(batch_id)
        await track(res, account, report)
        latest = int(await res.w3.eth.get_transaction_count(account.address, "latest"))  # type: ignore[arg-type]
        await close_nonces(res, account.address, latest, report)
    return report
