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
from fastapi.dependencies.models import Dependant
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from backend.core.db import StatementPool, unit_of_work
from backend.core.ratelimit import Check, enforce, enforce_all
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


async def get_statements(resources: ResourcesDep) -> StatementPool:
    """Reads of one statement for the hottest routes, without a session (`StatementPool`)."""
    return resources.statements


async def get_settings_dep(resources: ResourcesDep) -> Settings:
    return resources.settings


async def get_signer(resources: ResourcesDep) -> PayloadSigner:
    return resources.signer


Session = Annotated[AsyncSession, Depends(get_session, scope="function")]
Statements = Annotated[StatementPool, Depends(get_statements)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
Signer = Annotated[PayloadSigner, Depends(get_signer)]


def client_ip(request: HTTPConnection) -> str:
    """The caller's address (behind a proxy, run uvicorn with --proxy-headers)."""
    return request.client.host if request.client else "unknown"


def _ip_limit(request: HTTPConnection, settings: Settings) -> Check:
    path = request.scope["path"]  # not `request.url`: building the URL cost more than the rest
    if path.startswith("/auth"):
        return settings.rate_limit_auth, "ip-auth", client_ip(request)
    if path.startswith("/admin"):
        return settings.rate_limit_admin, "ip-admin", client_ip(request)
    return settings.rate_limit_default, "ip", client_ip(request)


_signs_in: dict[int, tuple[Dependant, bool]] = {}


def _needs_principal(request: HTTPConnection) -> bool:
    """Whether the matched route depends on `current_principal` (worked out once a route)."""
    dependant: Dependant | None = getattr(request.scope.get("route"), "dependant", None)
    if dependant is None:
        return False
    known = _signs_in.get(id(dependant))
    if known is None or known[0] is not dependant:
        found, pending = False, [dependant]
        while pending and not found:
            node = pending.pop()
            found = node.call is current_principal
            pending += node.dependencies
        known = _signs_in[id(dependant)] = (dependant, found)
    return known[1]


async def limit_by_ip(request: HTTPConnection, resources: ResourcesDep) -> None:
    """Every route: a per-IP limit, stricter on sign-in and admin routes. A route for signed-in
    wallets counts it in `current_principal` instead, with the wallet's limit, in the same
    Redis round trip (first the address, then the wallet, as two hits would)."""
    if not _needs_principal(request):
        await enforce(resources, *_ip_limit(request, resources.settings))


async def current_principal(request: HTTPConnection, resources: ResourcesDep) -> Principal:
    """The signed-in wallet of `Authorization: Bearer <access token>` (401 otherwise), counted
    against the caller's per-IP limit and then its wallet's."""
    by_ip = _ip_limit(request, resources.settings)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    try:
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("send `Authorization: Bearer <access token>` (POST /auth/wallet)")
        principal = resources.tokens.read(token.strip())
    except Unauthorized:
        await enforce(resources, *by_ip)  # a refused caller still counts against its address
        raise
    await enforce_all(
        resources, [by_ip, (resources.settings.rate_limit_wallet, "wallet", principal.wallet)]
    )
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
