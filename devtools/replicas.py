"""An HTTP transport that does what a real wallet's dapp does against a replicated API:
requests spread over the replicas, connection errors retried on the next one, and 503 (and
429) answers retried after their Retry-After.

TEST/DEV ONLY.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

RETRY_STATUSES = (429, 503)


@dataclass
class RetryStats:
    connection_errors: int = 0
    retried_statuses: Counter[str] = field(default_factory=Counter)
    """503/429 answers by problem type (`signer-unavailable`, `slot-unavailable`, …)."""
    retry_after_missing: int = 0
    """503 answers without a Retry-After header: a contract breach, checked at the end."""
    by_replica: Counter[str] = field(default_factory=Counter)


def problem_type(response: httpx.Response) -> str:
    try:
        kind = str(response.json().get("type", ""))
    except ValueError:
        kind = ""
    return f"{response.status_code} {kind.rsplit('/', 1)[-1] or '?'}"


class ReplicaTransport(httpx.AsyncBaseTransport):
    """Round-robin over `urls`; each request is retried for at most `give_up_after` seconds."""

    def __init__(self, urls: list[str], give_up_after: float = 180.0) -> None:
        self._urls = [httpx.URL(u) for u in urls]
        self._next = itertools.cycle(range(len(urls)))
        self._inner = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=64))
        self.give_up_after = give_up_after
        self.stats = RetryStats()

    def _target(self, request: httpx.Request) -> httpx.Request:
        base = self._urls[next(self._next)]
        url = request.url.copy_with(scheme=base.scheme, host=base.host, port=base.port)
        self.stats.by_replica[str(base.port)] += 1
        return httpx.Request(
            request.method,
            url,
            headers=request.headers,
            content=request.content,
            extensions=request.extensions,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        deadline = time.monotonic() + self.give_up_after
        while True:
            try:
                response = await self._inner.handle_async_request(self._target(request))
            except (httpx.TransportError, OSError):
                # A replica died mid-request or refuses connections: the next one. (A POST
                # retried after its effect: the API's register and retopup return the live
                # lease's payload again; withdraw answers 409 when nothing is left.)
                self.stats.connection_errors += 1
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.3)
                continue
            if response.status_code not in RETRY_STATUSES or time.monotonic() > deadline:
                return response
            await response.aread()
            self.stats.retried_statuses[problem_type(response)] += 1
            retry_after = response.headers.get("retry-after")
            if retry_after is None and response.status_code == 503:
                self.stats.retry_after_missing += 1
            await response.aclose()
            await asyncio.sleep(min(float(retry_after or 1), 5.0))

    async def aclose(self) -> None:
        await self._inner.aclose()
