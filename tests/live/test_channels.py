"""Live events stay within the deployment that published them. Redis pub/sub ignores database
indexes, so two deployments (or test suites) on different databases of one Redis server would
otherwise hear each other's participants."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.db import make_sessionmaker, unit_of_work
from backend.core.events import STAFF, publish, user_channel
from backend.live.service import stream
from tests.fixtures.services import TEST_REDIS_URL


async def first_message(redis: Redis, channels: list[str], seconds: float) -> Any:
    messages = stream(redis, channels)
    try:
        return json.loads(await asyncio.wait_for(anext(messages), seconds))
    except TimeoutError:
        return None
    finally:
        await messages.aclose()


async def test_a_deployment_hears_only_its_own_redis_database(db_engine: AsyncEngine) -> None:
    ours = Redis.from_url(TEST_REDIS_URL)
    base, _, db = TEST_REDIS_URL.rpartition("/")
    theirs = Redis.from_url(f"{base}/{(int(db) + 8) % 16}")  # another database, same server
    sessions = make_sessionmaker(db_engine, {"publisher": ours})
    try:
        heard_here = asyncio.create_task(first_message(ours, [user_channel(7), STAFF], 5.0))
        heard_there = asyncio.create_task(first_message(theirs, [user_channel(7), STAFF], 2.0))
        await asyncio.sleep(0.3)  # both subscribed
        async with unit_of_work(sessions) as session:
            publish(session, user_channel(7), "reward.created", {"amount": "1"})
        here, there = await heard_here, await heard_there
        assert here is not None and here["type"] == "reward.created"
        assert there is None, f"another database's subscriber heard {there}"
    finally:
        await ours.aclose()
        await theirs.aclose()
