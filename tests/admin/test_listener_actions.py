"""An admin's listener actions: replaying a block range rebuilds exactly the same ledger, and
acknowledging an anomaly (audited) lets payouts resume."""

from __future__ import annotations

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web3 import Web3

from backend.core.security import Role
from backend.models import AuditLog, BlockchainSync
from backend.monitoring import service as monitoring
from listener.sync import ChainSync
from tests.fixtures.flows import sponsor_chain
from tests.fixtures.ledger import ledger_rows
from tests.fixtures.services import Deployment, new_wallet, token_for
from tests.listener.test_anomalies import steal


def admin(app: FastAPI) -> dict[str, str]:
    return token_for(app, 1, Account.create().address, Role.ADMIN)


async def test_a_replay_from_the_first_block_rebuilds_the_same_ledger(
    app: FastAPI,
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
) -> None:
    await sponsor_chain(api, w3, chain_sync, company.address, 3)
    before = await ledger_rows(sessions, exclude=("blockchain_sync", "audit_logs"))
    async with sessions() as s:
        cursor = await s.scalar(select(BlockchainSync))
    assert cursor is not None
    at = (cursor.last_block, cursor.last_block_hash)

    r = await api.post("/monitoring/replay-events", json={"fromBlock": 0}, headers=admin(app))
    assert r.status_code == 200, r.text
    assert r.json()["fromBlock"] == 0 and len(r.json()["cursors"]) == 1
    async with sessions() as s:
        rewound = await s.scalar(select(BlockchainSync))
        audit = await s.scalar(select(AuditLog).where(AuditLog.action == "listener.replay"))
    assert rewound is not None and rewound.last_block == -1
    assert audit is not None

    await chain_sync.sync_once()
    async with sessions() as s:
        cursor = await s.scalar(select(BlockchainSync))
    assert cursor is not None and (cursor.last_block, cursor.last_block_hash) == at
    assert await ledger_rows(sessions, exclude=("blockchain_sync", "audit_logs")) == before


async def test_a_replay_past_the_head_is_refused(app: FastAPI, api: httpx.AsyncClient) -> None:
    r = await api.post("/monitoring/replay-events", json={"fromBlock": 10**9}, headers=admin(app))
    assert r.status_code == 422
    assert r.json()["type"].endswith("block-ahead")


AUDITOR = Account.create().address


async def test_acknowledging_the_anomalies_lets_payouts_resume(
    app: FastAPI,
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    deployment: Deployment,
) -> None:
    await sponsor_chain(api, w3, chain_sync, company.address, 2)
    steal(w3, deployment, new_wallet(w3, 0).address, 10**18)
    await sponsor_chain(api, w3, chain_sync, company.address, 1)  # mines past finality
    # Staff see the open anomalies and why payouts stop, through the API.
    listed = await api.get(
        "/monitoring/anomalies", headers=token_for(app, 3, AUDITOR, Role.AUDITOR)
    )
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert "2 unacknowledged anomalies" in body["submissionsBlocked"]
    ids = [a["id"] for a in body["items"]]
    assert len(ids) == 2
    assert {a["kind"] for a in body["items"]} == {
        "unexpected-PayoutExecuted",
        "unexpected-BatchExecuted",
    }
    assert sum(int(a["outflow"]) for a in body["items"]) == 10**18

    participant = token_for(app, 2, Account.create().address)
    r = await api.post(
        f"/monitoring/anomalies/{ids[0]}/ack", json={"note": "x"}, headers=participant
    )
    assert r.status_code == 403
    headers = admin(app)
    for anomaly_id in ids:
        r = await api.post(
            f"/monitoring/anomalies/{anomaly_id}/ack",
            json={"note": "a stolen signer key: rotated (docs/operations.md)"},
            headers=headers,
        )
        assert r.status_code == 200, r.text
    again = await api.post(
        f"/monitoring/anomalies/{ids[0]}/ack", json={"note": "x"}, headers=headers
    )
    assert again.status_code == 409 and again.json()["type"].endswith("anomaly-acknowledged")
    missing = await api.post(
        "/monitoring/anomalies/999999/ack", json={"note": "x"}, headers=headers
    )
    assert missing.status_code == 404
    async with sessions() as s:
        assert await monitoring.submissions_blocked(s) is None
        audits = list(
            await s.scalars(select(AuditLog).where(AuditLog.action == "anomaly.acknowledge"))
        )
    assert len(audits) == 2
    after = (await api.get("/monitoring/anomalies", headers=headers)).json()
    assert after == {"submissionsBlocked": None, "items": []}
