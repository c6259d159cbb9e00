"""Liveness and readiness. `/health` says the process answers; `/ready` checks each
dependency the API needs, each with its own status, and answers 503 if one is down."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from backend.chain.signer_client import SignerClient
from backend.core.deps import Reader, ResourcesDep, Session
from backend.core.types import WeiStr
from backend.core.wiring import Resources
from backend.monitoring import service

router = APIRouter(tags=["monitoring"])

CHECK_TIMEOUT = 2.0


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is up (no dependency is checked: that is `/ready`)."""
    return {"status": "ok"}


async def _database(res: Resources) -> dict[str, Any]:
    async with res.sessions() as session:
        await session.execute(text("SELECT 1"))
        block, _ = await service.confirmed_block(session)
        blocked = await service.submissions_blocked(session)
        halted = await service.listener_halt(session)
    return {
        "status": "ok",
        "confirmedBlock": block,
        "payoutsBlocked": blocked,
        "listenerHalted": halted,
    }


async def _redis(res: Resources) -> dict[str, Any]:
    await res.redis.ping()
    return {"status": "ok"}


async def _rpc(res: Resources) -> dict[str, Any]:
    return {"status": "ok", "head": int(await res.w3.eth.block_number)}


async def _signer(res: Resources) -> dict[str, Any]:
    signer = res.signer
    if isinstance(signer, SignerClient) and not await signer.health():
        return {"status": "down"}
    return {"status": "ok"}


async def _check(name: str, probe: Any, res: Resources) -> tuple[str, dict[str, Any]]:
    try:
        return name, await asyncio.wait_for(probe(res), CHECK_TIMEOUT)
    except Exception as exc:
        return name, {"status": "down", "error": type(exc).__name__}


@router.get("/ready")
async def ready(res: ResourcesDep) -> JSONResponse:
    """Database, Redis, chain RPC, signer and listener lag, each with its own status."""
    checks = dict(
        await asyncio.gather(
            _check("database", _database, res),
            _check("redis", _redis, res),
            _check("rpc", _rpc, res),
            _check("signer", _signer, res),
        )
    )
    head = checks["rpc"].get("head")
    confirmed = checks["database"].get("confirmedBlock")
    listener: dict[str, Any] = {"status": "unknown"}
    if checks["database"].get("listenerHalted"):
        listener = {"status": "halted", "reason": checks["database"]["listenerHalted"]}
    elif isinstance(head, int) and isinstance(confirmed, int):
        lag = head - confirmed
        limit = res.settings.confirmations + res.settings.listener_max_lag_blocks
        listener = {"status": "ok" if lag <= limit else "lagging", "lagBlocks": lag}
    checks["listener"] = listener
    ok = all(c["status"] == "ok" for c in checks.values())
    return JSONResponse(
        {"status": "ok" if ok else "degraded", "checks": checks}, 200 if ok else 503
    )


class ReconciliationOut(BaseModel):
    """One reconciliation: contract balance against ledger liabilities by bucket, the
    contract's surplus apart from any deficit, and per-recipient payout mismatches."""

    id: int
    block: int
    contractBalance: WeiStr
    liabilities: WeiStr
    buckets: dict[str, WeiStr]
    surplus: WeiStr
    surplusCredited: WeiStr
    """Surplus this run credited to the company (a pending reward line with its reason)."""
    deficit: WeiStr
    difference: int
    recipientMismatches: list[dict[str, str]]
    ok: bool
    createdAt: datetime


class ReconciliationPage(BaseModel):
    latest: ReconciliationOut | None
    items: list[ReconciliationOut]


@router.get("/monitoring/reconciliation", response_model=ReconciliationPage)
async def reconciliation(
    session: Session, _: Reader, limit: Annotated[int, Query(ge=1, le=100)] = 10
) -> ReconciliationPage:
    """The reconciliation job's stored results, newest first (auditor, operator, admin)."""
    rows = await service.reconciliation_reports(session, limit)
    items = [
        ReconciliationOut(
            id=r.id,
            block=r.block_number,
            contractBalance=int(r.contract_balance),
            liabilities=int(r.liabilities),
            buckets={k: int(v) for k, v in r.buckets.items()},
            surplus=int(r.surplus),
            surplusCredited=int(r.surplus_credited),
            deficit=int(r.deficit),
            difference=int(r.difference),
            recipientMismatches=r.recipient_mismatches,
            ok=r.ok,
            createdAt=r.created_at,
        )
        for r in rows
    ]
    return ReconciliationPage(latest=items[0] if items else None, items=items)


class OpenAnomaly(BaseModel):
    """A final chain event the ledger did not expect, not yet acknowledged."""

    id: int
    kind: str
    detail: str
    txHash: str | None
    block: int | None
    inflow: WeiStr
    outflow: WeiStr
    createdAt: datetime


class AnomaliesOut(BaseModel):
    submissionsBlocked: str | None
    """Why the settlement worker submits nothing now (open anomalies, a halted listener)."""
    items: list[OpenAnomaly]


@router.get("/monitoring/anomalies", response_model=AnomaliesOut)
async def anomalies(session: Session, _: Reader) -> AnomaliesOut:
    """Open anomalies, oldest first, and whether payouts are blocked (auditor, operator, admin).
    An admin acknowledges one with POST /monitoring/anomalies/{id}/ack."""
    rows = await service.anomalies_open(session)
    return AnomaliesOut(
        submissionsBlocked=await service.submissions_blocked(session),
        items=[
            OpenAnomaly(
                id=r.id,
                kind=r.kind,
                detail=r.detail,
                txHash=r.log.get("txHash"),
                block=r.log.get("blockNumber"),
                inflow=int(r.inflow),
                outflow=int(r.outflow),
                createdAt=r.created_at,
            )
            for r in rows
        ],
    )
