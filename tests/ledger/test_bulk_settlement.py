"""The bulk path (backend.ledger.bulk, what a backfill runs) writes the same ledger as the
per-event path, row for row and id for id: on random runs of registrations (some slots
confirmed out of order) and retopups, for every plan shape (reserves released, reinvested into
auto-progressions, cascading through four levels, rounding dust), on top of a ledger already
holding earlier events (their reserved lines are flipped by the run) and with freezes in force
at some of the run's blocks."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from eth_account import Account
from redis.asyncio import Redis
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from web3 import Web3

from backend.core.db import make_sessionmaker, unit_of_work
from backend.core.events import PUBLISHER, wire_channel
from backend.ledger.apply import apply_event
from backend.ledger.bulk import SettleEvent, settle_run
from backend.ledger.errors import BulkRefused
from backend.ledger.genesis import seed
from backend.models import ChainEvent, Freeze, Placement, Reward, User
from backend.plan.config import PlanConfig
from listener.sync import store_events
from tests.fixtures.db import row_counts, truncate_all
from tests.fixtures.ledger import ledger_rows_without_times, restore_tables, save_tables
from tests.fixtures.services import TEST_REDIS_URL
from tests.plan.conftest import CASCADE, DUSTY, PROGRESSION, V1

PLANS = {"v1": V1, "progression": PROGRESSION, "dusty": DUSTY, "cascade": CASCADE}
FIRST, TOTAL = 50, 130  # events settled before the run, and in all


def scenario(
    plan: PlanConfig, rng: random.Random, company: str, salt: int = 0
) -> list[dict[str, Any]]:
    """`TOTAL` events as the listener stores them: registrations into slots 1, 2, … (each pair
    of siblings sometimes confirmed right child first, leaving a hole) sponsored by random
    participants, and retopups by random participants; three events a block."""
    wallets = [company]
    registrations = [e for e in range(TOTAL) if e < 4 or rng.random() >= 0.2]
    slots = list(range(1, len(registrations) + 1))
    for i in range(0, len(slots) - 1, 2):
        if rng.random() < 0.3:
            slots[i], slots[i + 1] = slots[i + 1], slots[i]
    slot_of = dict(zip(registrations, slots, strict=True))
    rows = []
    for e in range(TOTAL):
        if e in slot_of:
            user = Web3.to_checksum_address(rng.randbytes(20))
            args = {
                "user": user,
                "referrer": wallets[rng.randrange(len(wallets))],
                "slot": str(slot_of[e]),
                "amount": str(plan.entry_price),
            }
            name = "RegistrationAccepted"
            wallets.append(user)
        else:
            name = "RetopupCompleted"
            args = {
                "user": wallets[rng.randrange(1, len(wallets))],
                "amount": str(plan.retopup_price),
            }
        args |= {"planHash": plan.plan_hash_hex(), "nonce": str(e + 1)}
        rows.append(
            {
                "chain_id": 31337,
                "contract": "0x" + "00" * 20,
                "block_number": 1 + e // 3,
                "block_hash": "0x" + f"{1 + e // 3:064x}",
                "block_timestamp": 1,
                "tx_hash": "0x" + f"{salt:08x}{e + 1:056x}",  # salt: this test's own
                "log_index": 0,
                "name": name,
                "args": args,
            }
        )
    return rows


async def store(
    sessions: async_sessionmaker[AsyncSession], rows: list[dict[str, Any]]
) -> list[SettleEvent]:
    async with unit_of_work(sessions) as s:
        return await store_events(s, rows)


async def settle_each(
    sessions: async_sessionmaker[AsyncSession], events: list[SettleEvent]
) -> None:
    """The per-event path, as the listener runs it (a savepoint per transaction)."""
    async with unit_of_work(sessions) as s:
        for e in events:
            event = await s.get(ChainEvent, e.id)
            assert event is not None
            async with s.begin_nested():
                await apply_event(s, event)
            event.processed_at = func.now()


async def settle_bulk(
    sessions: async_sessionmaker[AsyncSession], events: list[SettleEvent]
) -> None:
    async with unit_of_work(sessions) as s:
        await settle_run(s, events)
        await s.execute(
            update(ChainEvent)
            .where(ChainEvent.id.in_([e.id for e in events]))
            .values(processed_at=func.now())
        )


class Heard:
    """The live events published on this Redis database while it listens (those of `txs`)."""

    def __init__(self, redis: Redis, txs: set[str]) -> None:
        self.redis, self.txs = redis, txs
        self.pubsub = redis.pubsub()

    async def __aenter__(self) -> list[tuple[str, str, dict[str, Any]]]:
        await self.pubsub.psubscribe(wire_channel(self.redis, "*"))
        self.heard: list[tuple[str, str, dict[str, Any]]] = []
        return self.heard

    async def __aexit__(self, *exc: object) -> None:
        while (message := await self.pubsub.get_message(timeout=0.5)) is not None:
            if message["type"] != "pmessage":
                continue
            body = json.loads(message["data"])
            if body["data"].get("txHash") in self.txs:
                self.heard.append((message["channel"].decode(), body["type"], body["data"]))
        await self.pubsub.aclose()


@pytest.mark.parametrize("plan_name", list(PLANS))
async def test_bulk_settlement_writes_the_per_event_ledger(
    db_engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], plan_name: str
) -> None:
    plan = PLANS[plan_name]
    rng = random.Random(f"bulk-{plan_name}")
    await truncate_all(db_engine)
    company = Account.create().address
    async with unit_of_work(sessions) as s:
        await seed(s, company, plan)
    rows = scenario(plan, rng, company, salt=list(PLANS).index(plan_name) + 1)
    await settle_each(sessions, await store(sessions, rows[:FIRST]))
    async with unit_of_work(sessions) as s:  # freezes in force during the run
        ids = list(await s.scalars(select(User.id).where(User.role == "user").order_by(User.id)))
        first_block, last_block = rows[FIRST]["block_number"], rows[-1]["block_number"]
        for user_id in rng.sample(ids, 6):
            at = rng.randrange(first_block - 2, last_block)
            s.add(Freeze(user_id=user_id, frozen=True, effective_block=at, actor="t"))
            if rng.random() < 0.5:
                later = rng.randrange(at, last_block + 1)
                s.add(Freeze(user_id=user_id, frozen=False, effective_block=later, actor="t"))
        reserved_before = set(await s.scalars(select(Reward.id).where(Reward.status == "reserved")))
    run = await store(sessions, rows[FIRST:])
    saved = await save_tables(sessions)
    redis = Redis.from_url(TEST_REDIS_URL)
    announcing = make_sessionmaker(db_engine, {PUBLISHER: redis})
    txs = {e.tx_hash for e in run}

    try:
        async with Heard(redis, txs) as announced_each:
            await settle_each(announcing, run)
        per_event = await ledger_rows_without_times(sessions)
        await restore_tables(sessions, saved)
        async with Heard(redis, txs) as announced_in_bulk:
            await settle_bulk(announcing, run)
        in_bulk = await ledger_rows_without_times(sessions)
    finally:
        await redis.aclose()

    for table in per_event:
        assert in_bulk[table] == per_event[table], table
    # The same live events, in the same order, to the same participants.
    assert announced_in_bulk == announced_each
    assert len(announced_each) > 2 * len(run)
    # The run reached what this test is about.
    async with sessions() as s:
        flipped = await s.scalar(
            select(func.count()).where(Reward.id.in_(reserved_before), Reward.status != "reserved")
        )
        held = await s.scalar(select(func.count()).where(Reward.status == "held"))
        upper = await s.scalar(
            select(func.count()).where(Placement.level > 1, Placement.chain_event_id >= run[0].id)
        )
        holes = await s.scalar(text("SELECT count(*) FROM slot_leases WHERE status = 'free'"))
    assert flipped and held
    if plan_name in ("progression", "cascade"):
        assert upper
    assert holes == 0  # every hole left by a right child first was filled by its sibling
    assert len(per_event["rewards"]) > 5 * TOTAL


async def test_a_run_the_ledger_cannot_settle_writes_nothing(
    db_engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await truncate_all(db_engine)
    company = Account.create().address
    async with unit_of_work(sessions) as s:
        await seed(s, company, V1)
    rows = scenario(V1, random.Random("refused"), company)[:20]
    rows[15]["args"]["referrer"] = Account.create().address  # nobody registered it
    run = await store(sessions, rows)
    before = await ledger_rows_without_times(sessions)
    counts = await row_counts(sessions)
    async with unit_of_work(sessions) as s:
        with pytest.raises(BulkRefused, match="unknown"):
            async with s.begin_nested():
                await settle_run(s, run)
    assert await row_counts(sessions) == counts
    assert await ledger_rows_without_times(sessions) == before
