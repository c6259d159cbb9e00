"""HTTP surface of the signer: POST /sign (bearer token), GET /health, /address, /metrics.

/health, /address and /metrics need no token: they reveal nothing that is not public (the
address is on chain as `signer()`), and probes and scrapers should not hold the signing token.

Errors are RFC 9457 problem documents (`application/problem+json`); a refusal's `type` is
`https://autopool.dev/problems/signer/<rule>` and the `rule` member repeats the rule name.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from signer.audit import AnchorError
from signer.policy import Refused
from signer.service import SigningService

PROBLEM_TYPE_PREFIX = "https://autopool.dev/problems/signer/"
# A 200-recipient batch is ~25 KB of JSON; anything near this limit is not a real payload.
MAX_BODY_BYTES = 256 * 1024
_TITLES = {
    401: "Unauthorized",
    403: "Refused by policy",
    413: "Request too large",
    422: "Invalid request",
    429: "Rate limited",
    500: "Signer error",
    503: "Signer unavailable",
}


def problem(status: int, rule: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    body = {
        "type": PROBLEM_TYPE_PREFIX + rule,
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "rule": rule,
    }
    return Response(
        json.dumps(body),
        status_code=status,
        media_type="application/problem+json",
        headers=headers,
    )


def create_app(service: SigningService, token: str, *, key_backend: str = "keystore") -> Starlette:
    """The ASGI app for a started service (`await service.start()`). `token` is the shared
    secret callers present as `Authorization: Bearer`."""
    expected = token.encode()
    audit = service.audit
    metrics = service.metrics
    log = structlog.get_logger("signer.http")

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await audit.start()
        log.info(
            "signer started",
            address=service.address,
            chain_id=service.policy.chain_id,
            contract=service.policy.contract,
            key_backend=key_backend,
            audit_seq=audit.seq,
            anchored_seq=audit.anchored,
        )
        yield
        await service.aclose()

    def authorized(request: Request) -> bool:
        scheme, _, supplied = request.headers.get("authorization", "").partition(" ")
        # compare_digest: the comparison time does not depend on where the strings differ.
        return scheme.lower() == "bearer" and hmac.compare_digest(supplied.encode(), expected)

    async def internal_error(request: Request, exc: Exception) -> Response:
        log.error("internal error", path=request.url.path, error=repr(exc))
        return problem(500, "signer-error", "the signer failed; nothing was handed out")

    async def sign(request: Request) -> Response:
        started = time.perf_counter()
        if not authorized(request):
            metrics.refused("unauthorized")
            log.warning("refusal", rule="unauthorized", client=str(request.client))
            return problem(
                401,
                "unauthorized",
                "missing or invalid bearer token",
                headers={"WWW-Authenticate": 'Bearer realm="autopool-signer"'},
            )
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            metrics.refused("body-too-large")
            return problem(413, "body-too-large", f"bodies are limited to {MAX_BODY_BYTES} bytes")
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            metrics.refused("body-too-large")
            return problem(413, "body-too-large", f"bodies are limited to {MAX_BODY_BYTES} bytes")
        try:
            body: Any = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except (ValueError, RecursionError):
            exc = Refused("invalid-json", "the body must be a JSON object", 422)
            service.refuse(exc, None, None, raw[:2000].decode(errors="replace"))
            audit.flush()
            return problem(exc.status, exc.rule, exc.detail)
        try:
            signed = await service.sign(
                body.get("primaryType"), body.get("message"), body.get("domain")
            )
        except Refused as exc:
            audit.flush()
            return problem(exc.status, exc.rule, exc.detail)
        try:
            await service.handed_out(signed)
        except AnchorError as exc:
            # The record is in the log, but not anchored: the signature is not handed out.
            metrics.refused("anchor-unavailable")
            log.error("anchor write failed", error=str(exc))
            return problem(503, "anchor-unavailable", "the audit log could not be anchored")
        metrics.observe(signed.primary_type, time.perf_counter() - started)
        return Response(json.dumps(signed.as_json()), media_type="application/json")

    async def health(_: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "address": service.address,
                "chainId": service.policy.chain_id,
                "verifyingContract": service.policy.contract,
                "domainSeparator": "0x" + service.hasher.domain_separator.hex(),
                "auditSeq": audit.seq,
                "anchoredSeq": audit.anchored,
            }
        )

    async def address(_: Request) -> Response:
        return JSONResponse({"address": service.address})

    async def prometheus(_: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # Plain Starlette (FastAPI's core) rather than FastAPI: no request models to validate here,
    # and FastAPI's dependency solving costs more per request than the signature itself.
    return Starlette(
        routes=[
            Route("/sign", sign, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/address", address, methods=["GET"]),
            Route("/metrics", prometheus, methods=["GET"]),
        ],
        exception_handlers={Exception: internal_error},
        lifespan=lifespan,
    )
