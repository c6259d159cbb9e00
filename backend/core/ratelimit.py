"""Rate limits on Redis (the `limits` library, moving windows), shared by every API replica.

Limits protect the service, not the money (the ledger's guarantees do not depend on them), so
when Redis cannot be reached a request is let through and counted, rather than refused.

A request is usually counted against two limits (its address's and its wallet's). `enforce_all`
counts several in one Redis round trip, with the moving-window rule of `limits`
(acquire_moving_window.lua) on the same keys, so `limits` reads the same windows back.
"""

from __future__ import annotations

import time
from functools import lru_cache
from weakref import WeakKeyDictionary

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from prometheus_client import Counter
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from backend.core.errors import AppError
from backend.core.logging import log
from backend.core.wiring import Resources

LIMITER_ERRORS = Counter(
    "autopool_rate_limiter_errors_total", "Rate-limit checks that could not reach Redis"
)
LIMITED = Counter("autopool_rate_limited_total", "Requests refused by a rate limit", ["scope"])

Check = tuple[str, str, str]  # (limit, e.g. "30/minute"; scope; key within the scope)

# `limits`' acquire_moving_window.lua for one hit, over several keys in order: the first limit
# that is full refuses (its 1-based index is returned) and the later ones are not counted, as
# if each had been hit in turn and the request stopped at the refusal. 0: all were counted.
_HIT_ALL = """
local timestamp = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 * i])
  local expiry = tonumber(ARGV[2 * i + 1])
  local entry = redis.call('lindex', key, limit - 1)
  if entry and tonumber(entry) >= timestamp - expiry then
    return i
  end
  redis.call('lpush', key, timestamp)
  redis.call('ltrim', key, 0, limit - 1)
  redis.call('expire', key, expiry)
end
return 0
"""
_scripts: WeakKeyDictionary[Redis, AsyncScript] = WeakKeyDictionary()


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
    except Exception:
        LIMITER_ERRORS.inc()
        log.warning("rate limiter unavailable; request let through", scope=scope)
        return
    await _refuse(res, limit, scope, key)


async def enforce_all(res: Resources, checks: list[Check]) -> None:
    """`enforce` each of `checks` in turn, in one Redis round trip: 429 for the first that is
    over (the ones after it are not counted)."""
    items = [_item(limit) for limit, _, _ in checks]
    keys = [
        f"{RedisStorage.PREFIX}:{i.key_for(s, k)}"
        for i, (_, s, k) in zip(items, checks, strict=True)
    ]
    args: list[float | int] = [time.time()]
    for item in items:
        args += [item.amount, item.get_expiry()]
    try:
        script = _scripts.get(res.redis)
        if script is None:
            script = _scripts[res.redis] = res.redis.register_script(_HIT_ALL)
        refused = int(await script(keys, args))
    except Exception:
        LIMITER_ERRORS.inc()
        log.warning("rate limiter unavailable; request let through", scope=checks[0][1])
        return
    if refused:
        await _refuse(res, *checks[refused - 1])


async def _refuse(res: Resources, limit: str, scope: str, key: str) -> None:
    """429 with Retry-After (when the window frees a place), or let the request through if
    Redis cannot be asked."""
    try:
        stats = await res.limiter.get_window_stats(_item(limit), scope, key)
    except Exception:
        LIMITER_ERRORS.inc()
        log.warning("rate limiter unavailable; request let through", scope=scope)
        return
    LIMITED.labels(scope).inc()
    retry_after = max(1, int(stats.reset_time - time.time()) + 1)
    raise RateLimited(f"more than {limit} ({scope})", retry_after=retry_after)
