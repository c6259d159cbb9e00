"""Typed FastAPI dependencies: one session per request, the process's resources, and who is
calling.

The session's transaction commits when the handler returns, before the response is sent
(`scope="function"`), and rolls back if the handler raises; jobs queued with
`backend.core.db.after_commit` run after that commit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from backend.core.db import unit_of_work
from backend.core.ratelimit import enforce
from backend.core.security import OPERATORS, READERS, Forbidden, Principal, Role, Unauthorized
from backend.core.settings import Settings
from backend.core.wiring import PayloadSigner, Resources

# The dependencies below are `async def` although they do not await: FastAPI runs a plain
# `def` dependency in a worker thread, a hop that cost more than the rest of `/health`.


async def get_resources(request: HTTPConnection) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_session(resources: ResourcesDep) -> AsyncIterator[AsyncSession]:
    async with unit_of_work(resources.sessions) as session:
        yield session


async def get_read_session(resources: ResourcesDep) -> AsyncIterator[AsyncSession]:
    """A session for a route that reads in one statement: no transaction is opened, nothing
    is committed (`Resources.read_sessions`)."""
    async with resources.read_sessions() as session:
        yield session


async def get_settings_dep(resources: ResourcesDep) -> Settings:
    return resources.settings


async def get_signer(resources: ResourcesDep) -> PayloadSigner:
    return resources.signer


Session = Annotated[AsyncSession, Depends(get_session, scope="function")]
ReadSession = Annotated[AsyncSession, Depends(get_read_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
Signer = Annotated[PayloadSigner, Depends(get_signer)]


def client_ip(request: HTTPConnection) -> str:
    """The caller's address (behind a proxy, run uvicorn with --proxy-headers)."""
    return request.client.host if request.client else "unknown"


async def limit_by_ip(request: HTTPConnection, resources: ResourcesDep) -> None:
    """Every route: a per-IP limit, stricter on sign-in and admin routes."""
    settings = resources.settings
    path = request.url.path
    if path.startswith("/auth"):
        limit, scope = settings.rate_limit_auth, "ip-auth"
    elif path.startswith("/admin"):
        limit, scope = settings.rate_limit_admin, "ip-admin"
    else:
        limit, scope = settings.rate_limit_default, "ip"
    await enforce(resources, limit, scope, client_ip(request))


async def current_principal(request: HTTPConnection, resources: ResourcesDep) -> Principal:
    """The signed-in wallet of `Authorization: Bearer <access token>` (401 otherwise)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("send `Authorization: Bearer <access token>` (POST /auth/wallet)")
    principal = resources.tokens.read(token.strip())
    await enforce(resources, resources.settings.rate_limit_wallet, "wallet", principal.wallet)
    return principal


CurrentUser = Annotated[Principal, Depends(current_principal)]


def require(roles: frozenset[Role]) -> Callable[[Principal], Awaitable[Principal]]:
    async def check(principal: CurrentUser) -> Principal:
        if not principal.can(roles):
            raise Forbidden(f"needs one of the roles {sorted(roles)}")
        return principal

    return check


Reader = Annotated[Principal, Depends(require(READERS))]  # auditor, operator, admin
Operator = Annotated[Principal, Depends(require(OPERATORS))]  # operator, admin
Admin = Annotated[Principal, Depends(require(frozenset({Role.ADMIN})))]
