"""Rate limits on Redis (the `limits` library, moving windows), shared by every API replica.

Limits protect the service, not the money (the ledger's guarantees do not depend on them), so
when Redis cannot be reached a request is let through and counted, rather than refused.
"""

from __future__ import annotations

import time
from functools import lru_cache

from limits import RateLimitItem, parse
from prometheus_client import Counter

from backend.core.errors import AppError
from backend.core.logging import log
from backend.core.wiring import Resources

LIMITER_ERRORS = Counter(
    "autopool_rate_limiter_errors_total", "Rate-limit checks that could not reach Redis"
)
LIMITED = Counter("autopool_rate_limited_total", "Requests refused by a rate limit", ["scope"])


@lru_cache(maxsize=64)
def _item(limit: str) -> RateLimitItem:
    return parse(limit)


class RateLimited(AppError):
    status = 429
    type = "rate-limited"
    title = "Too many requests"


async def enforce(res: Resources, limit: str, scope: str, key: str) -> None:
    """Count one request of `key` against `limit` (e.g. "30/minute"); 429 with Retry-After
    when it is over."""
    item = _item(limit)
    try:
        allowed = await res.limiter.hit(item, scope, key)
        if allowed:
            return
        stats = await res.limiter.get_window_stats(item, scope, key)
    except Exception:
        LIMITER_ERRORS.inc()
        log.warning("rate limiter unavailable; request let through", scope=scope)
        return
    LIMITED.labels(scope).inc()
    retry_after = max(1, int(stats.reset_time - time.time()) + 1)
    raise RateLimited(f"more than {limit} ({scope})", retry_after=retry_after)
