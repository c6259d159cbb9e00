"""Participants: registration requests (DESIGN §3), and what the ledger reads and writes of them
when a registration or retopup is final.

A registration request runs in two steps so the lease lock is never held across the signer
call: `lease_registration` validates, leases the slot and writes the pending payload, made
durable before the signer is asked (the signer checks it); `sign_payload` asks the signer and
stores the signature. The lease step of the common case (`register_at_once`) is one statement
in PostgreSQL (`autopool_register_wallet`, migration 0012); every other case takes
`reserve_registration` in the caller's session, which the caller commits. A wallet retrying
while its lease is live gets the same payload (signed again if the first answer was lost:
signing is deterministic).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.db import EIP712_NONCE_SEQ, StatementPool, next_value
from backend.core.security import Principal
from backend.core.wiring import Resources
from backend.models import PayloadKind, PayloadStatus, RewardStatus, Transaction, User, UserStatus
from backend.monitoring import service as monitoring
from backend.plan.errors import InconsistentState
from backend.plan.types import Participant
from backend.plan_versions import service as plan_versions
from backend.pool import service as pool
from backend.rewards import service as rewards
from backend.users import repository as repo
from backend.users.errors import (
    AlreadyRegistered,
    NotAParticipant,
    ReferrerFrozen,
    ReferrerNotActive,
    RegistrationPending,
    RetopupPending,
    SelfReferral,
    TooManyUnpaidLeases,
    UnknownReferrer,
    UserFrozen,
    UserNotFound,
)
from backend.users.schemas import (
    Balances,
    ConfirmOut,
    HistoryItem,
    HistoryPage,
    MeOut,
    PendingEventOut,
    PoolNodeView,
    Position,
    Referral,
    ReferralNode,
    ReferralPage,
    ReferralStats,
    RegistrationOut,
    RegistrationPayload,
    RetopupOut,
    RetopupPayload,
    TreeOut,
    WalletTx,
)
from backend.users.schemas import PendingRegistration as PendingRegistrationOut


@dataclass(frozen=True)
class PendingPayload:
    """A payload written for a wallet (registration or retopup), signed or not yet."""

    primary_type: str  # "Registration" | "Retopup"
    payload_id: int
    payload: dict[str, Any]
    signature: str | None


PendingRegistration = PendingPayload


def _check_referrer(wallet: str, referrer_wallet: str, referrer: User | None) -> User:
    if wallet == referrer_wallet:
        raise SelfReferral("a wallet cannot be its own referrer", wallet=wallet)
    if referrer is None:
        raise UnknownReferrer(f"{referrer_wallet} is not registered", referrer=referrer_wallet)
    if referrer.status != UserStatus.ACTIVE:
        raise ReferrerNotActive(
            f"{referrer_wallet} has not completed its registration", referrer=referrer_wallet
        )
    if referrer.is_frozen:
        raise ReferrerFrozen(f"{referrer_wallet} is frozen and cannot sponsor")
    return referrer


async def _expire_payload(session: AsyncSession, payload_id: int) -> None:
    """A payload whose deadline passed on a confirmed block can never execute."""
    await repo.expire_payload(session, payload_id)
    await pool.expire_placement(session, payload_id)


async def reserve_registration(
    session: AsyncSession,
    res: Resources,
    wallet: str,
    referrer_wallet: str,
    *,
    client_ip: str | None = None,
    slot: int | None = None,
) -> PendingPayload:
    """Lease the lowest leasable level-1 slot for `wallet` (or the `slot` an admin chose) and
    write its pending payload, or return the payload of its live lease (a wallet's retry).
    Every check runs before anything is written; a refusal writes nothing (the caller's
    transaction rolls back). A client address holding too many unpaid leases is refused:
    squatting slots costs nothing on chain, so it is bounded here."""
    # Read before the lease lock what it does not order, so that it is held (and every other
    # registration waits) only for what it does: the confirmed chain time (it only grows: an
    # earlier reading keeps leases live a little longer and counts more of them as live,
    # never fewer), the referrer and the plan in force (neither changes under this lock).
    # Their checks still run in the same order, after the wallet's own.
    confirmed_time = await monitoring.confirmed_time(session)
    sponsor = None if wallet == referrer_wallet else await repo.by_wallet(session, referrer_wallet)
    plan, plan_hash = await plan_versions.in_force(session)
    await pool.lock_leases(session)

    user = await repo.by_wallet(session, wallet, lock=True)
    if user is not None and user.status == UserStatus.ACTIVE:
        raise AlreadyRegistered(f"{wallet} is already registered", wallet=wallet)
    if user is not None and user.is_frozen:
        raise UserFrozen(f"{wallet} is frozen")
    referrer = _check_referrer(wallet, referrer_wallet, sponsor)

    if user is not None:
        live = await pool.live_lease(session, user.id)
        if live is not None and live.deadline >= confirmed_time:
            # Its payload may still execute: never lease a second slot beside it.
            if (
                live.referrer_id == referrer.id
                and live.transaction_id is not None
                and monitoring.still_valid(live.deadline, confirmed_time)
            ):
                payload = await repo.payload_by_id(session, live.transaction_id)
                if payload is None:
                    raise InconsistentState(f"lease of slot {live.slot} has no payload")
                return PendingPayload(
                    "Registration", payload.id, payload.payload, payload.signature
                )
            raise RegistrationPending(
                f"{wallet} has a registration pending until {live.deadline}",
                deadline=live.deadline,
            )
        if live is not None:  # lapsed on a confirmed block: free its slot first
            if live.transaction_id is not None:
                await repo.expire_payload(session, live.transaction_id)
            await pool.free_lease(session, live)
            await session.flush()

    if client_ip is not None:
        held = await repo.live_payloads_from(
            session, client_ip, confirmed_time, res.settings.max_live_leases_per_ip
        )
        if held >= res.settings.max_live_leases_per_ip:
            raise _too_many_leases(res, held)
    if user is None:
        user = await repo.create_pending(session, wallet, referrer.id)
    else:
        user.referrer_id = referrer.id
    nonce = await next_value(session, EIP712_NONCE_SEQ)
    deadline = monitoring.deadline_after(confirmed_time, res.settings.lease_seconds)
    amount = plan.entry_price
    payload_row = Transaction(
        kind=PayloadKind.REGISTER,
        user_id=user.id,
        nonce=nonce,
        amount=amount,
        deadline=deadline,
        plan_hash=plan_hash,
        payload={},
        signature=None,
        client_ip=client_ip,
    )
    session.add(payload_row)
    await session.flush()
    lease = pool.lease_slot if slot is None else partial(pool.lease_chosen_slot, slot=slot)
    taken = await lease(
        session,
        now=confirmed_time,
        user_id=user.id,
        referrer_id=referrer.id,
        transaction_id=payload_row.id,
        deadline=deadline,
    )
    if taken.lapsed_payload_id is not None:
        await _expire_payload(session, taken.lapsed_payload_id)
    payload_row.payload = _registration_payload(
        wallet, referrer.wallet, taken.slot, amount, plan_hash, nonce, deadline
    )
    await pool.add_pending_placement(
        session,
        user_id=user.id,
        slot=taken.slot,
        amount=amount - plan.direct_amount(amount),
        plan_hash=plan_hash,
        transaction_id=payload_row.id,
    )
    await session.flush()
    return PendingPayload("Registration", payload_row.id, payload_row.payload, None)


def _too_many_leases(res: Resources, held: int) -> TooManyUnpaidLeases:
    return TooManyUnpaidLeases(
        f"{held} unpaid registrations from this address are still live: pay or let them "
        "lapse first",
        retry_after=res.settings.lease_seconds,
    )


def _registration_payload(
    wallet: str, referrer: str, slot: int, amount: int, plan_hash: str, nonce: int, deadline: int
) -> dict[str, Any]:
    """The EIP-712 Registration message as stored and signed (uint256 fields as decimal
    strings)."""
    return {
        "user": wallet,
        "referrer": referrer,
        "slot": str(slot),
        "amount": str(amount),
        "planHash": plan_hash,
        "nonce": str(nonce),
        "deadline": deadline,
    }


async def lease_registration(
    session: AsyncSession,
    res: Resources,
    wallet: str,
    referrer_wallet: str,
    *,
    client_ip: str | None = None,
) -> PendingPayload:
    """A registration request's lease (`POST /users/register`): `register_at_once` for the
    common case, else `reserve_registration` in `session` (the caller commits)."""
    pending = await register_at_once(res, wallet, referrer_wallet, client_ip=client_ip)
    if pending is None:
        pending = await reserve_registration(
            session, res, wallet, referrer_wallet, client_ip=client_ip
        )
    return pending


async def register_at_once(
    res: Resources, wallet: str, referrer_wallet: str, *, client_ip: str | None = None
) -> PendingPayload | None:
    """`reserve_registration` for a wallet that is neither registered nor frozen and holds no
    lease (one that signed in, or one never seen), under a sponsor that may sponsor, in one
    statement of its own (`autopool_register_wallet`): the lease lock is held for its
    execution only. The same checks in the same order, the same rows, committed. None for any
    other case, or before this process has read the plan in force (nothing written):
    `reserve_registration` decides."""
    known = plan_versions.last_in_force()
    if known is None:
        return None
    plan, plan_hash = known
    amount = plan.entry_price
    got = await repo.register_wallet(
        res.statements,
        wallet=wallet,
        referrer_wallet=referrer_wallet,
        client_ip=client_ip,
        max_per_ip=res.settings.max_live_leases_per_ip,
        lease_seconds=res.settings.lease_seconds,
        plan_hash=plan_hash,
        amount=amount,
        placement_amount=amount - plan.direct_amount(amount),
    )
    if got.outcome == "general":
        return None
    if got.outcome == "too-many-leases":
        raise _too_many_leases(res, got.held or 0)
    taken = pool.lease_taken(got.outcome, got.slot, None, got.first_fresh)
    if got.transaction_id is None or got.nonce is None or got.deadline is None:
        raise InconsistentState(f"registration of {wallet} leased slot {taken.slot} unrecorded")
    payload = _registration_payload(
        wallet, referrer_wallet, taken.slot, amount, plan_hash, got.nonce, got.deadline
    )
    return PendingPayload("Registration", got.transaction_id, payload, None)


async def sign_payload(res: Resources, pending: PendingPayload) -> PendingPayload:
    """Have the signer sign the pending payload (its row is committed: the signer checks it)
    and store the signature, a statement of its own."""
    if pending.signature is not None:
        return pending
    signed = await res.signer.sign(pending.primary_type, pending.payload)
    await repo.store_signature_now(res.statements, pending.payload_id, signed.signature)
    return replace(pending, signature=signed.signature)


def registration_out(res: Resources, pending: PendingPayload) -> RegistrationOut:
    """The signed payload and the transaction the wallet sends."""
    if pending.signature is None:
        raise InconsistentState("registration payload is not signed yet")
    payload = pending.payload
    return RegistrationOut(
        payload=RegistrationPayload.model_validate(payload),
        signature=pending.signature,
        deadline=int(payload["deadline"]),
        nonce=int(payload["nonce"]),
        tx=WalletTx(
            to=res.abi.address,
            data=res.abi.register_data(payload, pending.signature),
            value=int(payload["amount"]),
            chainId=res.settings.chain_id,
        ),
    )


# ----------------------------------------------------------------------- for the ledger


def participant(user: User, frozen: bool | None = None) -> Participant:
    return Participant(
        user.id,
        user.referrer_id,
        user.is_frozen if frozen is None else frozen,
        user.has_retopup,
    )


async def participants(
    session: AsyncSession, ids: Iterable[int], at_block: int | None = None
) -> dict[int, Participant]:
    """The participants `ids` as the engine sees them; with `at_block`, frozen as the admins'
    decisions in force at that block say (a ledger rebuilt from the chain then applies each
    event exactly as it was first applied)."""
    users = await repo.by_ids(session, ids)
    frozen = (
        {} if at_block is None else await repo.frozen_at(session, [u.id for u in users], at_block)
    )
    return {
        u.id: participant(u, frozen.get(u.id, False) if at_block is not None else None)
        for u in users
    }


async def participant_at(session: AsyncSession, user: User, block: int) -> Participant:
    return (await participants(session, [user.id], block))[user.id]


async def set_frozen(
    session: AsyncSession, user_id: int, frozen: bool, *, block: int, actor: str, reason: str | None
) -> tuple[bool, bool]:
    """Freeze or unfreeze a participant from chain block `block` on; returns (before, after).
    Unfreezing returns its held rewards to pending."""
    found = await require(session, user_id)
    user = await repo.by_wallet(session, found.wallet, lock=True)
    if user is None:
        raise UserNotFound(f"no participant {user_id}")
    before = user.is_frozen
    if before != frozen:
        user.is_frozen = frozen
        await repo.add_freeze(session, user.id, frozen, block, actor, reason)
        if not frozen:
            await rewards.release_held(session, user.id)
    return before, frozen


async def company_root(session: AsyncSession) -> int | None:
    """The company root participant's id, or None before `autopool seed`."""
    return await repo.company_id(session)


async def company_id(session: AsyncSession) -> int:
    cid = await repo.company_id(session)
    if cid is None:
        raise InconsistentState("no company root participant: run `autopool seed` first")
    return cid


async def get(session: AsyncSession, user_id: int) -> User | None:
    return await repo.by_id(session, user_id)


async def by_wallet(session: AsyncSession, wallet: str, *, lock: bool = False) -> User | None:
    return await repo.by_wallet(session, wallet, lock=lock)


async def ensure_user(session: AsyncSession, wallet: str, role: str) -> User:
    return await repo.ensure_user(session, wallet, role)


async def sponsor_chain(
    session: AsyncSession, first_id: int | None, depth: int, *, at_block: int | None = None
) -> list[Participant]:
    """Up to `depth` sponsor generations, nearest first: at most `depth` primary-key reads
    (and one for their freezes at `at_block`)."""
    sponsors: list[User] = []
    next_id = first_id
    while next_id is not None and len(sponsors) < depth:
        sponsor = await repo.by_id(session, next_id)
        if sponsor is None:
            break
        sponsors.append(sponsor)
        next_id = sponsor.referrer_id
    if at_block is None:
        return [participant(s) for s in sponsors]
    frozen = await repo.frozen_at(session, [s.id for s in sponsors], at_block)
    return [participant(s, frozen.get(s.id, False)) for s in sponsors]


async def activate(
    session: AsyncSession, wallet: str, referrer_wallet: str, block_number: int
) -> tuple[User, User]:
    """A final registration makes `wallet` a participant under `referrer_wallet`."""
    referrer = await repo.by_wallet(session, referrer_wallet)
    if referrer is None or referrer.status != UserStatus.ACTIVE:
        raise InconsistentState(f"registration of {wallet}: referrer {referrer_wallet} unknown")
    user = await repo.ensure_user(session, wallet)
    if user.status == UserStatus.ACTIVE:
        raise InconsistentState(f"{wallet} registered twice")
    user.status, user.referrer_id = UserStatus.ACTIVE, referrer.id
    user.activated_block, user.activated_at = block_number, func.now()
    return user, referrer


async def confirm_payload(
    session: AsyncSession, nonce: int, tx_hash: str, block_number: int
) -> Transaction | None:
    """The payload with EIP-712 `nonce` executed on chain (None if it was never ours: a ledger
    rebuilt from chain data alone)."""
    payload = await repo.payload_by_nonce(session, nonce)
    if payload is not None:
        payload.status = PayloadStatus.CONFIRMED
        payload.tx_hash, payload.block_number = tx_hash, block_number
    return payload


async def retopping_participant(session: AsyncSession, wallet: str) -> User:
    """The participant a final retopup is for, locked."""
    user = await repo.by_wallet(session, wallet, lock=True)
    if user is None or user.status != UserStatus.ACTIVE:
        raise InconsistentState(f"retopup by {wallet}, who is not an active participant")
    return user


def mark_retopped(user: User) -> None:
    """From now on the participant's generation earns LEVEL income (DESIGN §4)."""
    user.has_retopup = True


# ----------------------------------------------------------------------- retopup


async def reserve_retopup(session: AsyncSession, res: Resources, user_id: int) -> PendingPayload:
    """Write the pending retopup payload of an active, unfrozen participant (or return the one
    that may still execute). The row is committed before the signer is asked, as for
    registration, so the signer can check it (docs/signer.md)."""
    confirmed_time = await monitoring.confirmed_time(session)
    found = await repo.by_id(session, user_id)
    if found is None:
        raise UserNotFound(f"no participant {user_id}")
    user = await repo.by_wallet(session, found.wallet, lock=True)
    if user is None:
        raise UserNotFound(f"no participant {user_id}")
    if user.status != UserStatus.ACTIVE:
        raise NotAParticipant(f"{user.wallet} has no confirmed registration")
    if user.is_frozen:
        raise UserFrozen(f"{user.wallet} is frozen")
    live = await repo.live_retopup(session, user.id, confirmed_time)
    if live is not None:
        if monitoring.still_valid(live.deadline, confirmed_time):
            return PendingPayload("Retopup", live.id, live.payload, live.signature)
        raise RetopupPending(
            f"a retopup of {user.wallet} is pending until {live.deadline}", deadline=live.deadline
        )
    nonce = await next_value(session, EIP712_NONCE_SEQ)
    deadline = monitoring.deadline_after(confirmed_time, res.settings.lease_seconds)
    plan, plan_hash = await plan_versions.in_force(session)
    amount = plan.retopup_price
    payload = {
        "user": user.wallet,
        "amount": str(amount),
        "planHash": plan_hash,
        "nonce": str(nonce),
        "deadline": deadline,
    }
    row = Transaction(
        kind=PayloadKind.RETOPUP,
        user_id=user.id,
        nonce=nonce,
        amount=amount,
        deadline=deadline,
        plan_hash=plan_hash,
        payload=payload,
        signature=None,
    )
    session.add(row)
    await session.flush()
    return PendingPayload("Retopup", row.id, payload, None)


def retopup_out(res: Resources, pending: PendingPayload) -> RetopupOut:
    if pending.signature is None:
        raise InconsistentState("retopup payload is not signed yet")
    payload = pending.payload
    return RetopupOut(
        payload=RetopupPayload.model_validate(payload),
        signature=pending.signature,
        deadline=int(payload["deadline"]),
        nonce=int(payload["nonce"]),
        tx=WalletTx(
            to=res.abi.address,
            data=res.abi.retopup_data(payload, pending.signature),
            value=int(payload["amount"]),
            chainId=res.settings.chain_id,
        ),
    )


# ----------------------------------------------------------------------- reads


async def require(session: AsyncSession, user_id: int) -> User:
    user = await repo.by_id(session, user_id)
    if user is None:
        raise UserNotFound(f"no participant {user_id}")
    return user


async def me(reads: StatementPool, principal: Principal) -> MeOut:
    """Everything a participant sees of itself, from the ledger, read in one statement."""
    row = await repo.me_row(reads, principal.user_id)
    if row is None:
        raise UserNotFound(f"no participant {principal.user_id}")
    balance: dict[str, str] = row["balance"] or {}
    by_type: dict[str, dict[str, int]] = {}
    for kind, status, total in row["by_type"]:
        by_type.setdefault(kind, {})[status] = int(total)
    pending = row["pending"]
    return MeOut(
        id=row["id"],
        wallet=row["wallet"],
        status=row["status"],
        roles=sorted(principal.roles),
        referrer=row["referrer"],
        frozen=row["is_frozen"],
        hasRetopup=row["has_retopup"],
        balances=Balances(
            byStatus={str(s): int(balance.get(str(s), 0)) for s in RewardStatus},  # type: ignore[arg-type]
            byType=by_type,  # type: ignore[arg-type]
        ),
        referrals=ReferralStats(direct=row["direct"], active=row["active"]),
        positions=[
            Position(
                level=n["level"],
                slot=n["slot"],
                filled=n["filled"],
                completed=n["completed"],
                reserved=int(n["reserved"]),
            )
            for n in row["positions"]
        ],
        pendingRegistration=None
        if pending is None
        else PendingRegistrationOut(
            slot=pending["slot"],
            deadline=pending["deadline"],
            nonce=int(pending["nonce"]),
            signed=pending["signed"],
        ),
        pendingEvents=[
            PendingEventOut(
                name=e["name"],
                blockNumber=e["blockNumber"],
                txHash=e["txHash"],
                amount=None if e["amount"] is None else int(e["amount"]),
            )
            for e in row["pending_events"]
        ],
    )


async def referrals_page(
    session: AsyncSession, user_id: int, cursor: int | None, limit: int
) -> ReferralPage:
    await require(session, user_id)
    rows = await repo.referrals(session, user_id, cursor, limit)
    items = [
        Referral(id=u.id, wallet=u.wallet, status=u.status, activatedBlock=u.activated_block)
        for u in rows
    ]
    return ReferralPage(items=items, nextCursor=items[-1].id if len(items) == limit else None)


TREE_MAX_NODES = 1_000


async def tree(session: AsyncSession, user_id: int, depth: int) -> TreeOut:
    """The participant's referral tree and its level-1 pool subtree, `depth` layers down,
    at most TREE_MAX_NODES referral nodes (then `truncated`)."""
    root_user = await require(session, user_id)
    root = ReferralNode(
        id=root_user.id, wallet=root_user.wallet, status=root_user.status, children=[]
    )
    layer = {root_user.id: root}
    count, truncated = 1, False
    for _ in range(depth):
        budget = TREE_MAX_NODES - count
        if not layer or budget <= 0:
            truncated = truncated or bool(layer)
            break
        children = await repo.children_of(session, list(layer), budget + 1)
        if len(children) > budget:
            truncated, children = True, children[:budget]
        next_layer = {}
        for child in children:
            node = ReferralNode(id=child.id, wallet=child.wallet, status=child.status, children=[])
            if child.referrer_id is not None:
                layer[child.referrer_id].children.append(node)
            next_layer[child.id] = node
        count += len(children)
        layer = next_layer
    else:
        truncated = truncated or bool(layer and await repo.children_of(session, list(layer), 1))
    level_one = [p for p in await pool.positions(session, user_id) if p.level == 1]
    nodes = await pool.subtree(session, 1, level_one[0].slot, depth) if level_one else []
    return TreeOut(
        depth=depth,
        truncated=truncated,
        referrals=root,
        pool=[PoolNodeView(slot=s, wallet=w, filled=f, completed=c) for s, w, f, c in nodes],
    )


async def history(
    session: AsyncSession,
    user_id: int,
    *,
    kind: str,
    cursor: int | None,
    limit: int,
    status: str | None = None,
    reward_type: str | None = None,
) -> HistoryPage:
    """A participant's rewards, retopups or payloads, newest first (`cursor`: last id)."""
    user = await require(session, user_id)
    items: list[HistoryItem] = []
    if kind == "reward":
        for r in await rewards.history(
            session, user_id, cursor=cursor, limit=limit, status=status, kind=reward_type
        ):
            items.append(
                HistoryItem(
                    kind="reward",
                    id=r.id,
                    at=r.created_at,
                    amount=int(r.amount),
                    status=r.status,
                    type=r.kind,
                    level=r.level,
                    batchId=r.batch_id,
                )
            )
    elif kind == "retopup":
        for t in await repo.retopups_history(session, user_id, before_id=cursor, limit=limit):
            items.append(
                HistoryItem(
                    kind="retopup",
                    id=t.id,
                    at=t.created_at,
                    amount=int(t.amount),
                    nonce=int(t.nonce),
                )
            )
    else:
        for p in await repo.payloads_history(
            session, user_id, before_id=cursor, limit=limit, status=status
        ):
            items.append(
                HistoryItem(
                    kind="transaction",
                    id=p.id,
                    at=p.created_at,
                    amount=int(p.amount),
                    status=p.status,
                    type=p.kind,
                    txHash=p.tx_hash,
                    nonce=int(p.nonce),
                )
            )
    pending = [
        PendingEventOut(
            name=e.name,
            blockNumber=e.block_number,
            txHash=e.tx_hash,
            amount=None if e.amount is None else int(e.amount),
        )
        for e in await repo.pending_events_of(session, user.wallet)
    ]
    return HistoryPage(
        items=items, nextCursor=items[-1].id if len(items) == limit else None, pending=pending
    )


async def confirm_registration_tx(
    session: AsyncSession, res: Resources, wallet: str, tx_hash: str
) -> ConfirmOut:
    """What the chain says of the wallet's registration transaction. Writes nothing: ledger
    rows are the listener's, from final blocks only."""
    from web3.exceptions import TransactionNotFound

    from backend.chain.events import EventDecoder

    try:
        receipt = await res.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
    except TransactionNotFound:
        try:
            await res.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return ConfirmOut(state="unknown", txHash=tx_hash)
        return ConfirmOut(state="pending", txHash=tx_hash)
    block = int(receipt["blockNumber"])
    head = int(await res.w3.eth.block_number)
    depth = head - block + 1
    if receipt["status"] != 1:
        return ConfirmOut(state="reverted", txHash=tx_hash, block=block, confirmations=depth)
    decoder = EventDecoder(res.w3, res.settings.contract_address)
    slot = None
    for entry in receipt["logs"]:
        decoded = decoder.decode(entry)
        if decoded and decoded[0] == "RegistrationAccepted" and decoded[1]["user"] == wallet:
            slot = int(decoded[1]["slot"])
    if slot is None:
        return ConfirmOut(state="unknown", txHash=tx_hash, block=block, confirmations=depth)
    user = await repo.by_wallet(session, wallet)
    ledger = "active" if user is not None and user.status == UserStatus.ACTIVE else "pending"
    final = depth > res.settings.confirmations
    return ConfirmOut(
        state="final" if final else "included",
        txHash=tx_hash,
        block=block,
        confirmations=depth,
        slot=slot,
        ledger=ledger,  # type: ignore[arg-type]
    )
