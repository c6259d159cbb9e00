"""Payout batches (DESIGN §3): build (pending rewards → one line per recipient, marked
batched), sign (by the signer service), submit (a gas-paying sender; it cannot move funds
without the signature), and record what the chain says became of each line.

A reward is paid at most once: the contract executes a batch id once, ever; rewards leave
`batched` only on the chain's PayoutExecuted / PayoutDeferred events (`record_payout`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy.ext.asyncio import AsyncSession
from web3 import AsyncWeb3
from web3.types import RPCEndpoint

from backend.chain.signer_client import SignerRefused
from backend.core.db import (
    EIP712_NONCE_SEQ,
    LOCK_PAYOUT_BUILD,
    PAYOUT_BATCH_ID_SEQ,
    advisory_xact_lock,
    next_value,
    unit_of_work,
)
from backend.core.logging import log
from backend.core.wiring import PayloadSigner, Resources
from backend.models import BatchStatus, LineStatus, PayoutBatch, PayoutLine, RewardStatus
from backend.monitoring import service as monitoring
from backend.payouts import repository as repo
from backend.payouts.errors import BatchNotFound, BatchWrongState, NothingToPay
from backend.payouts.failpoints import failpoint
from backend.payouts.fees import GasModel
from backend.payouts.messages import batch_message
from backend.payouts.sender import SenderReport, gas_model, run_sender
from backend.plan.errors import InconsistentState
from backend.rewards import service as rewards

NewAccountProbe = Callable[[list[str]], Awaitable[list[bool]]]


async def build_batch(
    session: AsyncSession,
    *,
    max_recipients: int,
    deadline_seconds: int,
    created_by: str,
    gas: GasModel | None = None,
    new_accounts: NewAccountProbe | None = None,
    only_users: list[int] | None = None,
) -> PayoutBatch:
    """Batch the pending rewards of up to `max_recipients` unfrozen participants, oldest first.
    A frozen participant's rewards are never batched and stay as they are.

    With a `gas` model the batch is cut, before it is signed, to the recipients whose lines
    fit under the gas ceiling with room for hostile recipients (`new_accounts` says which
    recipients are empty accounts, which cost more); the rest wait for the next batch.
    `only_users` restricts the batch to those participants (a withdrawal)."""
    await advisory_xact_lock(session, LOCK_PAYOUT_BUILD)
    user_ids = await repo.payable_recipients(session, max_recipients, only_users)
    if not user_ids:
        raise NothingToPay("no unfrozen participant has pending rewards")
    if gas is not None:
        wallets = await repo.wallets(session, user_ids)
        ordered = [wallets[u] for u in user_ids]
        empty = await new_accounts(ordered) if new_accounts else [False] * len(ordered)
        fitting = gas.fitting(empty)
        if fitting == 0:
            raise NothingToPay("not even one line fits under the gas ceiling")
        user_ids = user_ids[:fitting]
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
        attempts=0,
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
    failpoint("after_sign")
    batch.signature, batch.digest = signed.signature, signed.digest
    batch.status, batch.updated_at = BatchStatus.SIGNED, datetime.now(UTC)
    return batch


async def check_signable(session: AsyncSession, batch_id: int) -> PayoutBatch:
    """The batch, if signing it is allowed (built, or signed already: idempotent)."""
    batch = await _get(session, batch_id)
    if batch.status not in (BatchStatus.BUILT, BatchStatus.SIGNED):
        raise BatchWrongState(f"batch {batch_id} is {batch.status}", state=str(batch.status))
    return batch


async def check_submittable(session: AsyncSession, batch_id: int) -> PayoutBatch:
    """The batch, if sending it is allowed: signed, or submitted (a retry of the same signed
    batch with the same account nonce). Anything else is refused before the chain is asked."""
    batch = await _get(session, batch_id)
    if batch.status not in (BatchStatus.SIGNED, BatchStatus.SUBMITTED) or batch.signature is None:
        raise BatchWrongState(f"batch {batch_id} is {batch.status}", state=str(batch.status))
    return batch


async def expire_batch(session: AsyncSession, batch_id: int) -> bool:
    """Release an unexecuted batch whose deadline a confirmed block has passed: its rewards go
    back to pending (to be rebuilt under a new batch id), its lines are `released`. The
    contract refuses a batch past its deadline, so none of its attempts can execute it now."""
    batch = await _get(session, batch_id)
    if batch.status not in (BatchStatus.BUILT, BatchStatus.SIGNED, BatchStatus.SUBMITTED):
        return False
    if batch.deadline >= await monitoring.confirmed_time(session):
        return False
    await _release(session, batch)
    log.info("payout batch expired; rewards back to pending", batch=batch_id)
    return True


async def release_refused(session: AsyncSession, batch_id: int) -> bool:
    """Release a built batch the signer refused because a recipient is no longer an active,
    unfrozen participant (frozen after the batch was built): it was never signed, so nothing
    can execute it, and asking again would be refused until its deadline. Its rewards go back
    to pending at once; the next build leaves the frozen participant out."""
    batch = await _get(session, batch_id)
    if batch.status != BatchStatus.BUILT:
        return False
    await _release(session, batch)
    log.warning("refused payout batch released; rewards back to pending", batch=batch_id)
    return True


async def _release(session: AsyncSession, batch: PayoutBatch) -> None:
    """Every line's batched rewards back to pending (lines `released`), the batch `expired`."""
    batch_id = batch.id
    deltas = rewards.BalanceDeltas()
    for line in await repo.lines_of(session, batch_id):
        if line.status != LineStatus.BATCHED:
            raise InconsistentState(f"batch {batch_id} line {line.recipient} is {line.status}")
        moved = await rewards.flip_user_rewards(
            session,
            line.user_id,
            RewardStatus.BATCHED,
            RewardStatus.PENDING,
            deltas,
            batch_id=batch_id,
        )
        if moved != int(line.amount):
            raise InconsistentState(f"batch {batch_id}: released {moved}, line {line.amount}")
        line.status = LineStatus.RELEASED
    await deltas.apply(session)
    batch.status, batch.updated_at = BatchStatus.EXPIRED, datetime.now(UTC)


async def empty_accounts(w3: AsyncWeb3[Any], wallets: list[str], chunk: int = 500) -> list[bool]:
    """Which wallets hold nothing yet: paying them creates an account (25,000 gas more).
    Asked in JSON-RPC batches (one round trip per `chunk` wallets); a node that refuses
    batches is asked one wallet at a time."""
    empty: list[bool] = []
    for start in range(0, len(wallets), chunk):
        part = wallets[start : start + chunk]
        requests = [(RPCEndpoint("eth_getBalance"), [w, "latest"]) for w in part]
        try:
            answers = await w3.provider.make_batch_request(requests)  # type: ignore[attr-defined]
        except Exception:
            answers = None
        if isinstance(answers, list) and all("result" in a for a in answers):
            by_id = sorted(answers, key=lambda a: int(a["id"]))
            empty.extend(int(a["result"], 16) == 0 for a in by_id)
        else:
            empty.extend([int(await w3.eth.get_balance(w)) == 0 for w in part])  # type: ignore[arg-type]
    return empty


_brokers: dict[str, RedisBroker] = {}


def enqueue(redis_url: str, actor_name: str, *args: int) -> None:
    """Nudge the settlement worker (queue `settlement`) to run `actor_name`. Only a nudge: the
    record is in PostgreSQL and the next scheduled cycle does the same work if it is lost."""
    broker = _brokers.get(redis_url)
    if broker is None:
        broker = _brokers[redis_url] = RedisBroker(url=redis_url)  # type: ignore[no-untyped-call]
    broker.enqueue(
        dramatiq.Message(
            queue_name=SETTLEMENT_QUEUE, actor_name=actor_name, args=args, kwargs={}, options={}
        )
    )


SETTLEMENT_QUEUE = "settlement"


@dataclass
class CycleResult:
    built: list[int] = field(default_factory=list)
    signed: list[int] = field(default_factory=list)
    expired: list[int] = field(default_factory=list)
    sender: SenderReport | None = None


async def build_batches(
    res: Resources,
    *,
    created_by: str,
    limit: int,
    only_users: list[int] | None = None,
    progress: Callable[[str], None] = lambda _msg: None,
) -> list[int]:
    """Build up to `limit` batches, each sized by gas, until nothing is left to pay."""
    settings = res.settings
    built: list[int] = []
    for _ in range(limit):
        try:
            async with unit_of_work(res.sessions) as session:
                batch = await build_batch(
                    session,
                    max_recipients=settings.max_batch_recipients,
                    deadline_seconds=settings.batch_deadline_seconds,
                    created_by=created_by,
                    gas=gas_model(settings),
                    new_accounts=lambda wallets: empty_accounts(res.w3, wallets),
                    only_users=only_users,
                )
                progress(
                    f"built batch {batch.id}: {batch.recipient_count} recipients, {batch.total} wei"
                )
                built.append(batch.id)
        except NothingToPay:
            break
    return built


# The signer's rule for a recipient that is no longer an active, unfrozen participant.
RECIPIENT_GONE = "recipient-unknown"


async def sign_built(
    res: Resources, progress: Callable[[str], None] = lambda _msg: None, limit: int = 100
) -> list[int]:
    """Sign every built batch, oldest first, each in its own transaction."""
    async with res.sessions() as session:
        ids = await repo.batches_in(session, (BatchStatus.BUILT,), limit)
    signed: list[int] = []
    for batch_id in ids:
        try:
            async with unit_of_work(res.sessions) as session:
                batch = await sign_batch(session, res.signer, batch_id)
                progress(f"signed batch {batch_id}: digest {batch.digest}")
        except SignerRefused as exc:
            log.warning("signer refused a payout batch", batch=batch_id, rule=exc.rule)
            if exc.rule == RECIPIENT_GONE:
                async with unit_of_work(res.sessions) as session:
                    await release_refused(session, batch_id)
            # Otherwise the policy may agree later (a released reward's old batch is past its
            # deadline only by the signer's clock): the batch stays built, asked again next cycle.
            continue
        failpoint("after_sign_stored")
        signed.append(batch_id)
    return signed


async def expire_due(res: Resources) -> list[int]:
    async with res.sessions() as session:
        candidates = await repo.expirable_batches(session, await monitoring.confirmed_time(session))
    expired: list[int] = []
    for batch_id in candidates:
        async with unit_of_work(res.sessions) as session:
            if await expire_batch(session, batch_id):
                expired.append(batch_id)
    return expired


async def blocked(res: Resources) -> str | None:
    async with res.sessions() as session:
        return await monitoring.submissions_blocked(session)


async def send_signed(res: Resources) -> SenderReport:
    """The sender's run: reconcile, settle receipts, submit signed batches, bump."""
    return await run_sender(res, blocked=await blocked(res))


async def run_cycle(
    res: Resources,
    *,
    build: bool = True,
    created_by: str = "worker",
    progress: Callable[[str], None] = lambda _msg: None,
) -> CycleResult:
    """One settlement cycle (DESIGN §3): release expired batches, build new ones (sized by
    gas, caps from the settings), sign them, then run the sender. Each step commits on its
    own, so a crash anywhere leaves work the next cycle resumes, never repeats."""
    result = CycleResult(expired=await expire_due(res))
    if build and await blocked(res) is None:
        result.built = await build_batches(
            res,
            created_by=created_by,
            limit=res.settings.settlement_max_batches_per_cycle,
            progress=progress,
        )
    result.signed = await sign_built(res, progress)
    result.sender = await send_signed(res)
    return result


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
    """Finish the oldest batch left built or signed, or build one; sign it and send it through
    the sender (durable attempt first). The operators' one-shot run (`autopool payouts run`)."""
    async with res.sessions() as session:
        batch_id = await repo.oldest_unfinished(session)
    if batch_id is None:
        built = await build_batches(res, created_by=created_by, limit=1, progress=progress)
        if not built:
            progress("nothing to pay")
            return SettlementResult(None)
        batch_id = built[0]
    async with unit_of_work(res.sessions) as session:
        batch = await sign_batch(session, res.signer, batch_id)
        progress(f"signed batch {batch_id}: digest {batch.digest}")
    report = await send_signed(res)
    if report.halted or report.blocked:
        progress(f"sender stopped: {report.halted or report.blocked}")
    async with res.sessions() as session:
        batch = await _get(session, batch_id)
    progress(f"batch {batch_id} is {batch.status}: tx {batch.tx_hash}")
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
