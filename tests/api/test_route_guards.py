"""Every route is classified (a new one must be), and the classification holds: anonymous
callers get 401 on every non-public route, participants 403 on staff routes, auditors 403 on
every change, operators 403 on admin routes, and a participant cannot read another's data."""

from __future__ import annotations

import re

import httpx
import pytest
from eth_account import Account
from fastapi import FastAPI

from backend.core.errors import PROBLEM_BASE
from backend.core.security import Role
from tests.fixtures.services import token_for

PUBLIC, PARTICIPANT, READER, OPERATOR, ADMIN = (
    "public",
    "participant",
    "reader",
    "operator",
    "admin",
)

ROUTES = {
    ("GET", "/health"): PUBLIC,
    ("GET", "/ready"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/plan"): PUBLIC,
    ("GET", "/pool/summary"): PUBLIC,
    ("GET", "/treasury/summary"): PUBLIC,
    ("GET", "/auth/nonce"): PUBLIC,
    ("POST", "/auth/wallet"): PUBLIC,
    ("POST", "/auth/refresh"): PUBLIC,
    ("POST", "/auth/logout"): PUBLIC,
    ("GET", "/users/me"): PARTICIPANT,
    ("POST", "/users/register"): PARTICIPANT,
    ("POST", "/users/register/confirm"): PARTICIPANT,
    ("POST", "/users/{user_id}/retopup"): PARTICIPANT,
    ("GET", "/users/{user_id}/referrals"): PARTICIPANT,
    ("GET", "/users/{user_id}/tree"): PARTICIPANT,
    ("GET", "/users/{user_id}/history"): PARTICIPANT,
    ("GET", "/pool/{level}/queue"): PARTICIPANT,
    ("GET", "/pool/{level}/nodes"): PARTICIPANT,
    ("GET", "/rewards/pending"): PARTICIPANT,
    ("POST", "/users/withdraw"): PARTICIPANT,
    ("GET", "/monitoring/reconciliation"): READER,
    ("GET", "/monitoring/anomalies"): READER,
    ("GET", "/payouts"): READER,
    ("GET", "/payouts/{batch_id}"): READER,
    ("GET", "/admin/logs"): READER,
    ("GET", "/admin/audit"): READER,
    ("POST", "/payouts/build-batch"): OPERATOR,
    ("POST", "/payouts/{batch_id}/sign"): OPERATOR,
    ("POST", "/payouts/{batch_id}/submit"): OPERATOR,
    ("POST", "/payouts/{batch_id}/retry"): OPERATOR,
    ("POST", "/admin/users/{user_id}/freeze"): ADMIN,
    ("POST", "/admin/users/{user_id}/unfreeze"): ADMIN,
    ("POST", "/admin/config"): ADMIN,
    ("POST", "/admin/roles"): ADMIN,
    ("POST", "/pool/manual-placement"): ADMIN,
    ("POST", "/monitoring/replay-events"): ADMIN,
    ("POST", "/monitoring/anomalies/{anomaly_id}/ack"): ADMIN,
    ("POST", "/treasury/transfer"): ADMIN,
}


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) the app serves, from its OpenAPI document."""
    return {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


async def call(
    api: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]
) -> httpx.Response:
    return await api.request(
        method, concrete(path), headers=headers, json={} if method == "POST" else None
    )


def test_every_route_is_classified(offline_app: FastAPI) -> None:
    assert app_routes(offline_app) == set(ROUTES)


def guarded(*levels: str) -> list[tuple[str, str]]:
    return [key for key, level in ROUTES.items() if level in levels]


@pytest.mark.parametrize(("method", "path"), guarded(PARTICIPANT, READER, OPERATOR, ADMIN))
async def test_an_anonymous_caller_is_refused(
    offline_api: httpx.AsyncClient, method: str, path: str
) -> None:
    r = await call(offline_api, method, path, {})
    assert r.status_code == 401, r.text
    assert r.json()["type"] == PROBLEM_BASE + "unauthorized"


@pytest.mark.parametrize(("method", "path"), guarded(READER, OPERATOR, ADMIN))
async def test_a_participant_is_refused_staff_routes(
    offline_app: FastAPI, offline_api: httpx.AsyncClient, method: str, path: str
) -> None:
    r = await call(offline_api, method, path, token_for(offline_app, 7, Account.create().address))
    assert r.status_code == 403, r.text


@pytest.mark.parametrize(("method", "path"), guarded(OPERATOR, ADMIN))
async def test_an_auditor_changes_nothing(
    offline_app: FastAPI, offline_api: httpx.AsyncClient, method: str, path: str
) -> None:
    r = await call(
        offline_api, method, path, token_for(offline_app, 7, Account.create().address, Role.AUDITOR)
    )
    assert r.status_code == 403, r.text


@pytest.mark.parametrize(("method", "path"), guarded(READER))
async def test_an_auditor_reads(
    offline_app: FastAPI, offline_api: httpx.AsyncClient, method: str, path: str
) -> None:
    r = await call(
        offline_api, method, path, token_for(offline_app, 7, Account.create().address, Role.AUDITOR)
    )
    assert r.status_code in (200, 404), r.text  # allowed; batch 1 may not exist


@pytest.mark.parametrize(("method", "path"), guarded(ADMIN))
async def test_an_operator_is_refused_admin_routes(
    offline_app: FastAPI, offline_api: httpx.AsyncClient, method: str, path: str
) -> None:
    r = await call(
        offline_api,
        method,
        path,
        token_for(offline_app, 7, Account.create().address, Role.OPERATOR),
    )
    assert r.status_code == 403, r.text


@pytest.mark.parametrize("path", ["/users/1/referrals", "/users/1/tree", "/users/1/history"])
async def test_a_participant_cannot_read_another(
    offline_app: FastAPI, offline_api: httpx.AsyncClient, path: str
) -> None:
    r = await offline_api.get(path, headers=token_for(offline_app, 7, Account.create().address))
    assert r.status_code == 403, r.text
    assert r.json()["type"] == PROBLEM_BASE + "not-your-data"
    r = await offline_api.get(
        path, headers=token_for(offline_app, 7, Account.create().address, Role.AUDITOR)
    )
    assert r.status_code == 200, r.text  # user 1 is the company, seeded


async def test_a_participant_cannot_retop_up_for_another(
    offline_app: FastAPI, offline_api: httpx.AsyncClient
) -> None:
    r = await offline_api.post(
        "/users/1/retopup", headers=token_for(offline_app, 7, Account.create().address)
    )
    assert r.status_code == 403, r.text


async def test_unknown_routes_and_methods_are_problems_too(offline_api: httpx.AsyncClient) -> None:
    for r, status in (
        (await offline_api.get("/nowhere"), 404),
        (await offline_api.delete("/plan"), 405),
    ):
        assert r.status_code == status
        assert r.headers["content-type"].startswith("application/problem+json")


async def test_control_characters_are_refused_as_bad_input(
    offline_app: FastAPI, offline_api: httpx.AsyncClient
) -> None:
    staff = token_for(offline_app, 1, Account.create().address, Role.ADMIN)
    for path in ("/payouts?status=a%00b", "/admin/audit?actor=%00", "/users/1/history?type=%00"):
        r = await offline_api.get(path, headers=staff)
        assert r.status_code == 422, (path, r.text)
    r = await offline_api.post("/admin/users/1/freeze", json={"reason": "a\x00b"}, headers=staff)
    assert r.status_code == 422, r.text
