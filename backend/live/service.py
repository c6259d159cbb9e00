"""Live events for one WebSocket: the channels a principal may hear, and the stream."""

from __future__ import annotations

from collections.abc import AsyncIterator

from redis.asyncio import Redis

from backend.core.events import STAFF, user_channel, wire_channel
from backend.core.security import READERS, Principal


def channels_of(principal: Principal) -> list[str]:
    """A participant hears its own events; auditors, operators and admins also the staff
    channel (batches, pool, anomalies)."""
    channels = [user_channel(principal.user_id)]
    if principal.can(READERS):
        channels.append(STAFF)
    return channels


async def stream(redis: Redis, channels: list[str]) -> AsyncIterator[str]:
    """The JSON messages published on `channels`, as they come."""
    pubsub = redis.pubsub()
    channels = [wire_channel(redis, c) for c in channels]
    await pubsub.subscribe(*channels)
    try:
        async for message in pubsub.listen():
            if message.get("type") == "message":
                data = message["data"]
                yield data.decode() if isinstance(data, bytes) else str(data)
    finally:
        await pubsub.unsubscribe(*channels)
        await pubsub.aclose()  # type: ignore[no-untyped-call]
