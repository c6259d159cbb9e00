"""Every admin and operator state change writes exactly one audit row — actor, action,
before, after — in the same transaction as the change: a refused change writes none."""

from __future__ import annotations

from typing import Any

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web3 import Web3

from backend.core.db import unit_of_work
from backend.core.security import Role
from backend.models import AuditLog, Freeze, PlanVersion, RoleGrant, User
from backend.payouts import service as payouts
from backend.plan.config import load_plan
from listener.sync import ChainSync
from tests.fixtures.flows import sponsor_chain
from tests.fixtures.services import token_for


async def audit_rows(sessions: async_sessionmaker[AsyncSession]) -> list[AuditLog]:
    async with sessions() as s:
        return list(await s.scalars(select(AuditLog).order_by(AuditLog.id)))


def admin_headers(app: FastAPI) -> tuple[dict[str, str], str]:
    wallet = Account.create().address
    return token_for(app, 1, wallet, Role.ADMIN), wallet


async def changed(
    sessions: async_sessionmaker[AsyncSession],
    api: httpx.AsyncClient,
    request: tuple[str, dict[str, Any]],
    headers: dict[str, str],
    status: int = 200,
) -> tuple[httpx.Response, list[AuditLog]]:
    before = await audit_rows(sessions)
    path, body = request
    r = await api.post(path, json=body, headers=headers)
    assert r.status_code == status, r.text
    return r, (await audit_rows(sessions))[len(before) :]


async def test_freeze_and_unfreeze_are_audited_with_their_block(
    app: FastAPI,
    api: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    w3: Web3,
    chain_sync: ChainSync,
    company: LocalAccount,
) -> None:
    [member] = await sponsor_chain(api, w3, chain_sync, company.address, 1)
    async with sessions() as s:
        member_id = await s.scalar(select(User.id).where(User.wallet == member.address))
    headers, admin = admin_headers(app)
    r, rows = await changed(
        sessions, api, (f"/admin/users/{member_id}/freeze", {"reason": "kyc"}), headers
    )
    [row] = rows
    assert (row.actor, row.action, row.target) == (admin, "user.freeze", f"user:{member_id}")
    assert row.details["before"] == {"frozen": False} and row.details["after"] == {"frozen": True}
    assert row.block_number == r.json()["effectiveBlock"] > int(w3.eth.block_number)
    _, [row] = await changed(sessions, api, (f"/admin/users/{member_id}/unfreeze", {}), headers)
    assert row.action == "user.unfreeze" and row.details["after"] == {"frozen": False}
    async with sessions() as s:
        freezes = list(await s.scalars(select(Freeze.frozen).order_by(Freeze.id)))
    assert freezes == [True, False]


async def test_a_plan_version_is_validated_published_and_audited(
    app: FastAPI, api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    headers, _admin = admin_headers(app)
    document = load_plan().model_dump(mode="json") | {"version": 2, "direct_bps": 900}
    r, [row] = await changed(
        sessions, api, ("/admin/config", {"plan": document, "effectiveBlock": 10**9}), headers, 201
    )
    assert row.action == "plan.publish" and row.details["after"]["version"] == 2
    assert r.json()["planHash"] == row.details["after"]["planHash"]
    bad = document | {"version": 3, "layer_bps": [9000, 9000, 9000]}  # shares over 100%
    _, rows = await changed(sessions, api, ("/admin/config", {"plan": bad}), headers, 422)
    assert rows == []
    _, rows = await changed(sessions, api, ("/admin/config", {"plan": document}), headers, 409)
    assert rows == []  # the same version again: refused, nothing written
    async with sessions() as s:
        versions = list(await s.scalars(select(PlanVersion.version).order_by(PlanVersion.version)))
    assert versions == [1, 2]


async def test_granting_and_revoking_a_role_is_audited(
    app: FastAPI, api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    headers, _ = admin_headers(app)
    staff = Account.create().address
    _, [row] = await changed(
        sessions,
        api,
        ("/admin/roles", {"wallet": staff, "role": "operator", "grant": True}),
        headers,
    )
    assert row.action == "role.grant" and row.details["after"]["held"] is True
    _, [row] = await changed(
        sessions,
        api,
        ("/admin/roles", {"wallet": staff, "role": "operator", "grant": False}),
        headers,
    )
    assert row.action == "role.revoke" and row.details["before"]["held"] is True
    async with sessions() as s:
        grants = list(await s.scalars(select(RoleGrant).where(RoleGrant.wallet == staff)))
    assert len(grants) == 1 and grants[0].revoked_at is not None


async def test_a_manual_placement_is_audited_and_a_refused_one_writes_nothing(
    app: FastAPI,
    api: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
) -> None:
    headers, _ = admin_headers(app)
    wallet = Account.create().address
    body = {"wallet": wallet, "referrer": company.address, "slot": 2}
    r, [row] = await changed(sessions, api, ("/pool/manual-placement", body), headers)
    assert row.action == "pool.manual_placement" and row.target == "slot:2"
    assert int(r.json()["payload"]["slot"]) == 2 and r.json()["payload"]["user"] == wallet
    taken = {"wallet": Account.create().address, "referrer": company.address, "slot": 2}
    _, rows = await changed(sessions, api, ("/pool/manual-placement", taken), headers, 409)
    assert rows == []
    orphan = {"wallet": Account.create().address, "referrer": company.address, "slot": 9}
    r, rows = await changed(sessions, api, ("/pool/manual-placement", orphan), headers, 409)
    assert r.json()["type"].endswith("/parent-empty") and rows == []


async def test_payout_operations_are_audited(
    app: FastAPI,
    api: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    w3: Web3,
    chain_sync: ChainSync,
    company: LocalAccount,
) -> None:
    await sponsor_chain(api, w3, chain_sync, company.address, 2)
    headers = token_for(app, 1, Account.create().address, Role.OPERATOR)
    r, [row] = await changed(sessions, api, ("/payouts/build-batch", {}), headers, 201)
    batch = r.json()["id"]
    assert row.action == "payout.build" and row.target == f"batch:{batch}"
    # sign/submit hand the step to the settlement worker (202) and audit the request.
    _, [row] = await changed(sessions, api, (f"/payouts/{batch}/sign", {}), headers, 202)
    assert row.details["before"] == {"status": "built"}
    assert row.details["after"] == {"status": "built", "enqueued": "sign_batch"}
    res = app.state.resources
    async with unit_of_work(sessions) as s:  # what the worker's `sign_batch` does
        await payouts.sign_batch(s, res.signer, batch)
    _, [row] = await changed(sessions, api, (f"/payouts/{batch}/submit", {}), headers, 202)
    assert row.action == "payout.submit" and row.details["after"]["enqueued"] == "send_batches"
    await payouts.send_signed(res)  # what the worker's `send_batches` does
    # Signing again is refused now (409): no audit row.
    _, rows = await changed(sessions, api, (f"/payouts/{batch}/sign", {}), headers, 409)
    assert rows == []
