"""ASGI middleware of the API: a request id on every request (accepted from the caller when
well-formed, else made), bound to every log line and returned in `X-Request-ID`, and a latency
histogram per route template. `built` answers with a model a handler has already built."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from prometheus_client import Histogram
from pydantic import BaseModel
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_SECONDS = Histogram(
    "autopool_http_request_duration_seconds",
    "API request latency by route template",
    ["method", "route", "status"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def built(model: BaseModel) -> Response:
    """The JSON of `model`, a response model the handler built (so validated) itself. FastAPI
    validates and serializes a returned model a second time, which cost about a tenth of
    `GET /users/me`; a returned `Response` it sends as is. The route keeps its
    `response_model` for the schema."""
    return Response(model.model_dump_json(), media_type="application/json")


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = [500]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            if scope["type"] == "http":
                REQUEST_SECONDS.labels(scope.get("method", ""), template, str(status[0])).observe(
                    time.perf_counter() - started
                )
            structlog.contextvars.unbind_contextvars("request_id")
