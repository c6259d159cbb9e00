"""Live events: published on Redis pub/sub after the transaction that caused them commits (a
rolled-back change announces nothing), and fanned out by whichever API replica holds the
client's WebSocket. Events are notifications, never the record: a client that missed one
reads the ledger through the API.

Channels: `user:<id>` (a participant's own events) and `staff` (batches, pool, anomalies),
namespaced on the wire by the Redis database of the connection (`autopool:<db>:<channel>`):
Redis pub/sub ignores database indexes, so without it two deployments (or test suites) on
different databases of one server would hear each other's participants.
"""

from __future__ import annotations

import json
import time
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.db import after_commit

PUBLISHER = "publisher"
STAFF = "staff"


def user_channel(user_id: int) -> str:
    return f"user:{user_id}"


def wire_channel(redis: Redis, channel: str) -> str:
    """`channel` as published and subscribed on `redis`: scoped to its database index."""
    return f"autopool:{redis.connection_pool.connection_kwargs.get('db', 0)}:{channel}"


def publish(session: AsyncSession, channel: str, kind: str, data: dict[str, Any]) -> None:
    """Announce `kind` on `channel` once the session's transaction commits. A process without a
    publisher (configured by its resources) announces nothing."""
    redis: Redis | None = session.info.get(PUBLISHER)
    if redis is None:
        return
    message = json.dumps({"type": kind, "data": data, "at": time.time()}, default=str)

    async def send() -> None:
        await redis.publish(wire_channel(redis, channel), message)

    after_commit(session, send)
