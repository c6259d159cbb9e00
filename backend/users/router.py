"""HTTP routes of the users domain. A participant reads and acts on its own data only;
auditors, operators and admins read anyone's."""

from __future__ import annotations

from typing import Annotated, Literal

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel

from backend.core.db import after_commit, commit
from backend.core.deps import CurrentUser, ResourcesDep, Session, Statements, client_ip
from backend.core.errors import Conflict
from backend.core.http import built
from backend.core.security import Forbidden, Principal
from backend.core.types import NAME_PATTERN, WeiStr
from backend.rewards import service as rewards
from backend.users import service
from backend.users.errors import NotYourData, UserFrozen, UserNotFound
from backend.users.schemas import (
    ConfirmIn,
    ConfirmOut,
    HistoryPage,
    MeOut,
    ReferralPage,
    RegisterIn,
    RegistrationOut,
    RetopupOut,
    TreeOut,
)

router = APIRouter(prefix="/users", tags=["users"])

UserId = Annotated[int, Path(ge=1, le=2**62)]
Cursor = Annotated[int | None, Query(ge=0, le=2**62)]
Limit = Annotated[int, Query(ge=1, le=200)]


def _readable(principal: Principal, user_id: int) -> None:
    if not principal.may_read(user_id):
        raise NotYourData(f"participant {principal.user_id} cannot read participant {user_id}")


@router.get("/me", response_model=MeOut)
async def me(statements: Statements, principal: CurrentUser) -> Response:
    """The signed-in participant: status, balances by type and status, referral counts, pool
    positions and any registration awaiting payment. Every figure comes from the ledger."""
    return built(await service.me(statements, principal))


@router.post("/register", response_model=RegistrationOut)
async def register(
    body: RegisterIn, request: Request, session: Session, res: ResourcesDep, principal: CurrentUser
) -> Response:
    """Lease the lowest free level-1 slot for the signed-in wallet and return the signed
    registration for it to send. Retrying while the lease is live returns the same payload."""
    if body.wallet is not None and body.wallet != principal.wallet:
        raise Forbidden("a wallet registers itself: `wallet` must be the signed-in wallet")
    # A few registrations per process at a time reach the database (`registrations`): the
    # lease lock lets one through anyway, and a crowd of waiters would each hold a connection
    # and slow the holder's every round trip on this process's event loop.
    async with res.registrations:
        pending = await service.lease_registration(
            session, res, principal.wallet, body.referrer, client_ip=client_ip(request)
        )
        if pending.signature is None:
            # The lease is made durable (and the lease lock released) before the signer is
            # asked: registrations do not queue behind each other's signer round trip, and
            # the signer can check the lease it signs for. (The common case committed already,
            # in its own statement: the session has nothing to commit.)
            await commit(session)
    if pending.signature is None:
        pending = await service.sign_payload(res, pending)
    return built(service.registration_out(res, pending))


@router.post("/register/confirm", response_model=ConfirmOut)
async def register_confirm(
    body: ConfirmIn, session: Session, res: ResourcesDep, principal: CurrentUser
) -> ConfirmOut:
    """What the chain says of the wallet's registration transaction (pending, included, final,
    reverted). It writes nothing: the listener writes the ledger from final blocks."""
    return await service.confirm_registration_tx(session, res, principal.wallet, body.txHash)


@router.post("/{user_id}/retopup", response_model=RetopupOut)
async def retopup(
    user_id: UserId, session: Session, res: ResourcesDep, principal: CurrentUser
) -> RetopupOut:
    """The signed retopup payload for the participant to send (its own only)."""
    if user_id != principal.user_id:
        raise NotYourData("a participant retops up for itself only")
    pending = await service.reserve_retopup(session, res, user_id)
    if pending.signature is None:
        await commit(session)  # the payload row is durable before the signer checks it
        pending = await service.sign_payload(res, pending)
    return service.retopup_out(res, pending)


@router.get("/{user_id}/referrals", response_model=ReferralPage)
async def referrals(
    user_id: UserId,
    session: Session,
    principal: CurrentUser,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> ReferralPage:
    """Direct referrals, oldest first; `cursor` is the last id of the previous page."""
    _readable(principal, user_id)
    return await service.referrals_page(session, user_id, cursor, limit)


@router.get("/{user_id}/tree", response_model=TreeOut)
async def tree(
    user_id: UserId,
    session: Session,
    res: ResourcesDep,
    principal: CurrentUser,
    depth: Annotated[int, Query(ge=1, le=20)] = 3,
) -> TreeOut:
    """The referral tree and the level-1 pool subtree, `depth` layers down (at most the
    configured maximum)."""
    _readable(principal, user_id)
    return await service.tree(session, user_id, min(depth, res.settings.tree_max_depth))


@router.get("/{user_id}/history", response_model=HistoryPage)
async def history(
    user_id: UserId,
    session: Session,
    principal: CurrentUser,
    kind: Literal["reward", "retopup", "transaction"] = "reward",
    status: Annotated[str | None, Query(max_length=16, pattern=NAME_PATTERN)] = None,
    type: Annotated[str | None, Query(max_length=24, pattern=NAME_PATTERN)] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> HistoryPage:
    """Rewards (filter by status and type), retopups or signed payloads, newest first;
    `cursor` is the last id of the previous page."""
    _readable(principal, user_id)
    return await service.history(
        session, user_id, kind=kind, cursor=cursor, limit=limit, status=status, reward_type=type
    )


# ----------------------------------------------------------------------- withdraw (issue 12)


class NothingToWithdraw(Conflict):
    type = "nothing-to-withdraw"
    title = "No pending rewards to withdraw"


class WithdrawOut(BaseModel):
    """The caller's rewards asked for: `pending` goes out in an immediate batch (or the next
    cycle's); `batched` is already in a batch on its way."""

    pending: WeiStr
    batched: WeiStr
    status: Literal["queued"]


def _enqueue_withdrawal(redis_url: str, user_id: int, wallet: str) -> None:
    """Nudge the settlement worker's `build_batches` for this participant (queue
    `settlement`; the payouts domain's actor, named here because users may not import it)."""
    broker = RedisBroker(url=redis_url)  # type: ignore[no-untyped-call]
    try:
        broker.enqueue(
            dramatiq.Message(
                queue_name="settlement",
                actor_name="build_batches",
                args=(f"withdraw:{wallet}", user_id),
                kwargs={},
                options={},
            )
        )
    finally:
        broker.close()


@router.post("/withdraw", response_model=WithdrawOut, status_code=202)
async def withdraw(session: Session, res: ResourcesDep, principal: CurrentUser) -> WithdrawOut:
    """Ask that the caller's pending rewards go out now: an immediate batch of the caller's
    own rewards is built, signed and sent by the settlement worker, with the same guarantees
    as every batch (at most once; the signed batch is never doubled). Should the nudge be lost,
    the next scheduled cycle pays the same rewards. 409 `nothing-to-withdraw` when nothing is
    pending; 403 `user-frozen` for a frozen participant (its rewards are held)."""
    user = await service.get(session, principal.user_id)
    if user is None:
        raise UserNotFound(f"no participant {principal.user_id}")
    if user.is_frozen:
        raise UserFrozen("a frozen participant's rewards are held, not paid")
    balance = await rewards.balance(session, user.id)
    pending = int(balance.pending) if balance else 0
    batched = int(balance.batched) if balance else 0
    if pending == 0:
        raise NothingToWithdraw("no pending rewards", batched=str(batched))
    url, wallet = res.settings.redis_url, user.wallet
    after_commit(session, lambda: _enqueue_withdrawal(url, user.id, wallet))
    return WithdrawOut(pending=pending, batched=batched, status="queued")
