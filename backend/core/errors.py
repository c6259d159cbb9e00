"""Typed application errors rendered as RFC 9457 problem+json.

Each domain derives its own errors from `AppError`: `type` is a stable identifier clients may
switch on (`https://autopool.dev/problems/<type>`), `status` the HTTP status. Errors raised by
layers that know nothing of HTTP (the signer client, the plan engine) are mapped here once, so
no error leaves the API as a bare 500.
"""

from __future__ import annotations

from typing import Any, ClassVar

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.chain.errors import ChainError, classify
from backend.chain.signer_client import SignerRefused, SignerUnavailable
from backend.core.logging import log
from backend.plan.errors import NoLeasableSlot, PlanError

PROBLEM_BASE = "https://autopool.dev/problems/"
_BAD_TEXT = frozenset(
    {
        "CharacterNotInRepertoireError",
        "UntranslatableCharacterError",
        "NumericValueOutOfRangeError",
    }
)
_RESERVED = frozenset({"type", "title", "status", "detail", "instance", "type_"})
PROBLEM_JSON = "application/problem+json"
SIGNER_RETRY_SECONDS = 5
SLOT_RETRY_SECONDS = 5
DATABASE_RETRY_SECONDS = 1
# asyncpg's errors for a server that ends or refuses sessions (`pg_terminate_backend`, a
# shutdown, out of connections), and for a connection caught between the server's goodbye and
# the socket's end (MagicStack/asyncpg#1069: it refuses every statement).
DRIVER_CONNECTION_LOST: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.InternalClientError,
)
# The same, by name, as SQLAlchemy's wrapping of them reports them.
_CONNECTION_LOST = frozenset(
    {"AdminShutdownError", "ConnectionDoesNotExistError", "CannotConnectNowError"}
)


class Problem(BaseModel):
    """An RFC 9457 problem document. `type` is stable: clients switch on it; further members
    (`retry_after`, `rule`, `errors`, ...) depend on the type."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None


PROBLEM_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": text}
    for status, text in (
        (400, "Bad request"),
        (401, "Not signed in, or the token is not valid"),
        (403, "Signed in, but not allowed"),
        (404, "Not found"),
        (409, "The state does not allow it"),
        (422, "Invalid input"),
        (429, "Rate limited: see Retry-After"),
        (502, "The signer refused"),
        (503, "A dependency is down or not ready: see Retry-After"),
    )
}


def declare_problem_json(schema: dict[str, Any]) -> dict[str, Any]:
    """Declare every error response of an OpenAPI document as `application/problem+json`, the
    type the handlers send, with its schema (FastAPI files a response model under
    `application/json`, and none for a route of another response class). Idempotent:
    `schema` is changed in place and returned."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content")
                if not status.isdigit() or int(status) < 400 or not content:
                    continue
                body = content.get("application/json") or content.get(PROBLEM_JSON) or {}
                body.setdefault("schema", {"$ref": "#/components/schemas/Problem"})
                response["content"] = {PROBLEM_JSON: body}
    return schema


class AppError(Exception):
    status: ClassVar[int] = 400
    type: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(AppError):
    status = 404
    type = "not-found"
    title = "Not found"


class Conflict(AppError):
    status = 409
    type = "conflict"
    title = "Conflict"


class Unavailable(AppError):
    """A dependency is down or a resource is not ready yet: retry after `retry_after` s."""

    status = 503
    type = "unavailable"
    title = "Temporarily unavailable"


class DatabaseUnavailable(Unavailable):
    """The database could not be reached, or it ended the session mid-statement."""

    type = "database-unavailable"
    title = "Database unavailable"


def problem(
    status: int, type_: str, title: str, detail: str, instance: str | None = None, **extra: Any
) -> JSONResponse:
    """An RFC 9457 problem document; `retry_after` also becomes the Retry-After header."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + type_,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    headers = {"Retry-After": str(extra["retry_after"])} if "retry_after" in extra else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _foreign(exc: Exception) -> tuple[int, str, str, dict[str, Any]]:
    """(status, type, title, extra) for errors of layers that know nothing of HTTP."""
    if isinstance(exc, SignerUnavailable):
        return (
            503,
            "signer-unavailable",
            "The signer is unavailable",
            {"retry_after": SIGNER_RETRY_SECONDS},
        )
    if isinstance(exc, SignerRefused):
        # The signer's policy refused what the backend asked: not the client's fault, and not
        # something a retry changes. The rule is named so an operator can find it.
        return 502, "signer-refused", "The signer refused to sign", {"rule": exc.rule}
    if isinstance(exc, NoLeasableSlot):
        return (
            503,
            "slot-unavailable",
            "No level-1 slot can be leased yet",
            {"retry_after": SLOT_RETRY_SECONDS},
        )
    if isinstance(exc, PlanError):
        return 409, "plan-conflict", "The compensation plan forbids this", {}
    chain = classify(exc)
    if chain.retryable:
        return (
            503,
            "chain-unavailable",
            "The chain node is unavailable",
            {"retry_after": SIGNER_RETRY_SECONDS},
        )
    return (
        502,
        "chain-refused",
        "The chain node refused the request",
        {"reason": type(chain).__name__},
    )


def _node_errors() -> tuple[type[Exception], ...]:
    """What talking to a chain node raises besides typed errors: transport and web3 errors."""
    import aiohttp
    from web3.exceptions import Web3Exception

    return (aiohttp.ClientError, Web3Exception, TimeoutError, ConnectionError)


_NODE_ERRORS = _node_errors()


def connection_lost(exc: BaseException) -> bool:
    """Whether an asyncpg error means the session is gone (the server ended it, or cannot be
    reached), so a retry on another connection may succeed."""
    if isinstance(exc, DRIVER_CONNECTION_LOST):
        return True
    return isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc)


def _database_unavailable(request: Request) -> JSONResponse:
    return problem(
        DatabaseUnavailable.status,
        DatabaseUnavailable.type,
        DatabaseUnavailable.title,
        "the database connection was lost; retry",
        request.url.path,
        retry_after=DATABASE_RETRY_SECONDS,
    )


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> JSONResponse:
        extra = {k: v for k, v in exc.extra.items() if k not in _RESERVED}
        return problem(exc.status, exc.type, exc.title, exc.detail, request.url.path, **extra)

    async def _mapped(request: Request, exc: Exception) -> JSONResponse:
        status, type_, title, extra = _foreign(exc)
        log.warning("request refused", type=type_, detail=str(exc), path=request.url.path)
        return problem(status, type_, title, str(exc), request.url.path, **extra)

    for foreign in (SignerUnavailable, SignerRefused, PlanError, ChainError, *_NODE_ERRORS):
        app.add_exception_handler(foreign, _mapped)

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        # The connection was lost (a server restart, a failover, `pg_terminate_backend`): the
        # transaction rolled back and the pool drops the connection; the client may retry
        # (found by `python -m devtools.faults`: these were 500s).
        causes = {type(exc.orig).__name__, type(getattr(exc.orig, "__cause__", None)).__name__}
        if exc.connection_invalidated or causes & _CONNECTION_LOST:
            log.warning("database connection lost", detail=str(exc.orig), path=request.url.path)
            return _database_unavailable(request)
        # A value PostgreSQL cannot store (a NUL byte, a number beyond 64 bits) that slipped
        # past validation is bad input, not a server fault; anything else is re-raised.
        if type(exc.orig).__name__ in _BAD_TEXT or "invalid byte sequence" in str(exc.orig):
            return problem(
                422,
                "invalid-text",
                "Invalid text",
                "text PostgreSQL cannot store",
                request.url.path,
            )
        raise exc

    async def _driver(request: Request, exc: Exception) -> JSONResponse:
        # What asyncpg raises outside SQLAlchemy's wrapping: a connection the server ended
        # while SQLAlchemy was still setting it up (its on-connect codecs: "connection is
        # closed"). Found by `python -m devtools.faults` (pg-terminate). Any other misuse of a
        # connection is a bug, and stays a 500.
        if not connection_lost(exc):
            raise exc
        log.warning("database connection lost", detail=str(exc), path=request.url.path)
        return _database_unavailable(request)

    for driver_error in (asyncpg.InterfaceError, *DRIVER_CONNECTION_LOST):
        app.add_exception_handler(driver_error, _driver)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        field = ".".join(str(p) for p in first["loc"] if p != "body")
        return problem(
            422,
            "validation-error",
            "Invalid request",
            f"{field}: {first['msg']}" if field else str(first["msg"]),
            request.url.path,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(
            exc.status_code,
            f"http-{exc.status_code}",
            str(exc.detail),
            str(exc.detail),
            request.url.path,
        )
