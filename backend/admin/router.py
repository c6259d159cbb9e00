"""The admin console's actions. Every state change needs a role, is rate limited (stricter
than the rest) and writes exactly one audit row in the same transaction as the change."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query

from backend.admin import service
from backend.admin.schemas import (
    AnomalyAckIn,
    AnomalyOut,
    AuditEntry,
    AuditPage,
    ConfigIn,
    ConfigOut,
    FreezeIn,
    FreezeOut,
    LogEntry,
    LogPage,
    ManualPlacementIn,
    ReplayIn,
    ReplayOut,
    RoleIn,
    RoleOut,
)
from backend.audit import service as audit
from backend.core.db import commit
from backend.core.deps import Admin, Reader, ResourcesDep, Session
from backend.core.types import NAME_PATTERN
from backend.monitoring import service as monitoring
from backend.monitoring.errors import BlockAhead
from backend.users import service as users
from backend.users.schemas import RegistrationOut

router = APIRouter(tags=["admin"])

UserId = Annotated[int, Path(ge=1, le=2**62)]
Cursor = Annotated[int | None, Query(ge=0, le=2**62)]
Limit = Annotated[int, Query(ge=1, le=500)]


async def _set_frozen(
    user_id: int, frozen: bool, body: FreezeIn, session: Session, res: ResourcesDep, admin: Admin
) -> FreezeOut:
    after, block = await service.set_frozen(session, res, admin, user_id, frozen, body.reason)
    return FreezeOut(userId=user_id, frozen=after, effectiveBlock=block)


@router.post("/admin/users/{user_id}/freeze", response_model=FreezeOut)
async def freeze(
    user_id: UserId, body: FreezeIn, session: Session, res: ResourcesDep, admin: Admin
) -> FreezeOut:
    """Freeze a participant: its new rewards are held, none of its rewards is batched, it
    cannot sponsor, register or retop up."""
    return await _set_frozen(user_id, True, body, session, res, admin)


@router.post("/admin/users/{user_id}/unfreeze", response_model=FreezeOut)
async def unfreeze(
    user_id: UserId, body: FreezeIn, session: Session, res: ResourcesDep, admin: Admin
) -> FreezeOut:
    """Unfreeze a participant: its held rewards return to pending."""
    return await _set_frozen(user_id, False, body, session, res, admin)


@router.post("/admin/config", response_model=ConfigOut, status_code=201)
async def publish_plan(body: ConfigIn, session: Session, admin: Admin) -> ConfigOut:
    """Publish a new plan version, validated by the plan engine, effective from a block."""
    row = await service.publish_plan(session, admin, body.plan, body.effectiveBlock)
    return ConfigOut(
        version=row.version, planHash=row.plan_hash, effectiveBlock=row.effective_block
    )


@router.post("/admin/roles", response_model=RoleOut)
async def set_role(body: RoleIn, session: Session, admin: Admin) -> RoleOut:
    """Grant or revoke a staff role (participant is everyone's). Revoking ends the wallet's
    sessions."""
    await service.set_role(session, admin, body.wallet, body.role, body.grant)
    return RoleOut(wallet=body.wallet, role=body.role, granted=body.grant)


@router.post("/pool/manual-placement", response_model=RegistrationOut)
async def manual_placement(
    body: ManualPlacementIn, session: Session, res: ResourcesDep, admin: Admin
) -> RegistrationOut:
    """Lease a chosen level-1 slot for a wallet's registration (refused if the slot is taken
    or its parent empty) and return the signed payload for that wallet to send."""
    pending = await service.manual_placement(
        session, res, admin, body.wallet, body.referrer, body.slot
    )
    await commit(session)  # the lease (and its audit row) before the signer is asked
    pending = await users.sign_payload(res, pending)
    return users.registration_out(res, pending)


@router.get("/admin/logs", response_model=LogPage)
async def logs(
    session: Session,
    _: Reader,
    name: Annotated[str | None, Query(max_length=64, pattern=NAME_PATTERN)] = None,
    fromBlock: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    toBlock: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    cursor: Cursor = None,
    limit: Limit = 100,
) -> LogPage:
    """The contract's event log as the listener ingested it, newest first."""
    rows = await monitoring.events(
        session, cursor=cursor, limit=limit, name=name, from_block=fromBlock, to_block=toBlock
    )
    items = [
        LogEntry(
            id=e.id,
            name=e.name,
            block=e.block_number,
            txHash=e.tx_hash,
            logIndex=e.log_index,
            args=e.args,
            processedAt=e.processed_at,
        )
        for e in rows
    ]
    return LogPage(items=items, nextCursor=items[-1].id if len(items) == limit else None)


@router.get("/admin/audit", response_model=AuditPage)
async def audit_log(
    session: Session,
    _: Reader,
    actor: Annotated[str | None, Query(max_length=64, pattern=NAME_PATTERN)] = None,
    action: Annotated[str | None, Query(max_length=64, pattern=NAME_PATTERN)] = None,
    target: Annotated[str | None, Query(max_length=128, pattern=NAME_PATTERN)] = None,
    since: datetime | None = None,
    cursor: Cursor = None,
    limit: Limit = 100,
) -> AuditPage:
    """The append-only audit log, newest first, with filters."""
    rows = await audit.page(
        session, cursor=cursor, limit=limit, actor=actor, action=action, target=target, since=since
    )
    items = [
        AuditEntry(
            id=r.id,
            actor=r.actor,
            action=r.action,
            target=r.target,
            details=r.details,
            block=r.block_number,
            at=r.created_at,
        )
        for r in rows
    ]
    return AuditPage(items=items, nextCursor=items[-1].id if len(items) == limit else None)


@router.post("/monitoring/replay-events", response_model=ReplayOut)
async def replay_events(
    body: ReplayIn, session: Session, res: ResourcesDep, admin: Admin
) -> ReplayOut:
    """Have the listener ingest again from `fromBlock` (and clear a deep-reorg halt): each
    log is stored and applied once, by its unique key, so a replay changes nothing that is
    right and fills in anything missed."""
    head = int(await res.w3.eth.block_number)
    if body.fromBlock > head + 1:
        raise BlockAhead(f"block {body.fromBlock} is past the chain's head {head}")

    async def canonical(number: int) -> str:
        return (await res.w3.eth.get_block(number))["hash"].to_0x_hex()

    done = await monitoring.resume_listener(session, canonical, body.fromBlock)
    await audit.record(
        session,
        actor=admin.wallet,
        action="listener.replay",
        target=f"block:{body.fromBlock}",
        after={"cursors": done},
    )
    return ReplayOut(fromBlock=body.fromBlock, cursors=done)


@router.post("/monitoring/anomalies/{anomaly_id}/ack", response_model=AnomalyOut)
async def acknowledge_anomaly(
    anomaly_id: Annotated[int, Path(ge=1, le=2**62)],
    body: AnomalyAckIn,
    session: Session,
    admin: Admin,
) -> AnomalyOut:
    """Acknowledge an anomaly after investigating it: payouts resume once none is open."""
    row = await monitoring.acknowledge_anomaly(session, anomaly_id, admin.wallet)
    await audit.record(
        session,
        actor=admin.wallet,
        action="anomaly.acknowledge",
        target=f"anomaly:{anomaly_id}",
        before={"acknowledged": False},
        after={"acknowledged": True, "note": body.note},
    )
    return AnomalyOut(
        id=row.id,
        kind=row.kind,
        detail=row.detail,
        txHash=row.log.get("txHash"),
        inflow=int(row.inflow),
        outflow=int(row.outflow),
        acknowledgedBy=row.acknowledged_by,
    )
