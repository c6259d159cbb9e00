"""The ledger in PostgreSQL settles exactly what the in-memory engine does: the same balances
by status for every participant, the same reserves and progressions, event after event —
matrix completions, reserve releases and auto-progressions included (plans that reserve
enough to progress, plans whose shares leave rounding dust, cascades through four levels)."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from typing import Any

import pytest
from eth_account import Account
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from backend.core.db import unit_of_work
from backend.ledger.apply import apply_event
from backend.ledger.genesis import seed
from backend.models import ChainEvent, PoolNode, Reward, User, UserBalance
from backend.plan.config import PlanConfig
from backend.plan.memory import MemoryPool, Step
from tests.fixtures.db import truncate_all
from tests.fixtures.ledger import confirm_registration
from tests.plan.conftest import CASCADE, DUSTY, PROGRESSION, V1

PLANS = {"v1": V1, "progression": PROGRESSION, "dusty": DUSTY, "cascade": CASCADE}


async def confirm_retopup(session: AsyncSession, wallet: str, plan: PlanConfig, nonce: int) -> None:
    event = ChainEvent(
        chain_id=31337,
        contract="0x" + "00" * 20,
        block_number=1,
        block_hash="0x" + "11" * 32,
        block_timestamp=1,
        tx_hash="0x" + f"{nonce:064x}",
        log_index=1,
        name="RetopupCompleted",
        args={
            "user": wallet,
            "amount": str(plan.retopup_price),
            "planHash": plan.plan_hash_hex(),
            "nonce": str(nonce),
        },
    )
    session.add(event)
    await session.flush()
    await apply_event(session, event)


async def ledger_balances(sessions: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    async with sessions() as s:
        rows = (
            await s.execute(
                select(User.wallet, UserBalance.pending, UserBalance.held, UserBalance.reserved)
                .join(UserBalance, UserBalance.user_id == User.id)
                .order_by(User.id)
            )
        ).all()
        nodes = (
            await s.execute(
                select(PoolNode.level, PoolNode.slot, User.wallet, PoolNode.filled)
                .join(User, User.id == PoolNode.user_id)
                .order_by(PoolNode.level, PoolNode.slot)
            )
        ).all()
    return {
        "balances": {w: (int(p), int(h), int(r)) for w, p, h, r in rows},
        "nodes": [tuple(n) for n in nodes],
    }


Line = tuple[str, int, str, int | None, int | None, int | None, str | None]


def engine_lines(steps: list[Step], wallets: list[str]) -> Counter[Line]:
    """The reward lines the engine wrote for one event, every field the ledger stores."""
    lines = []
    for step in steps:
        lines.extend(step.lines)
        if step.result is not None:
            for effect in step.result.reserve_effects:
                lines.extend(effect.lines)
    return Counter(
        (
            wallets[ln.recipient_id],
            ln.amount,
            str(ln.kind),
            ln.level,
            ln.earner_slot,
            ln.generation,
            str(ln.reason) if ln.reason else None,
        )
        for ln in lines
    )


async def ledger_lines(sessions: async_sessionmaker[AsyncSession]) -> dict[int, Counter[Line]]:
    """Nonce of each event -> the reward lines the ledger wrote for it."""
    async with sessions() as s:
        rows = (
            await s.execute(
                select(
                    ChainEvent.args["nonce"].astext,
                    User.wallet,
                    Reward.amount,
                    Reward.kind,
                    Reward.level,
                    Reward.earner_slot,
                    Reward.generation,
                    Reward.reason,
                )
                .join(Reward, Reward.chain_event_id == ChainEvent.id)
                .join(User, User.id == Reward.user_id)
            )
        ).all()
    out: dict[int, Counter[Line]] = defaultdict(Counter)
    for nonce, wallet, amount, kind, level, slot, generation, reason in rows:
        out[int(nonce)][(wallet, int(amount), kind, level, slot, generation, reason)] += 1
    return out


def engine_balances(pool: MemoryPool, wallets: list[str]) -> dict[str, Any]:
    reserved: defaultdict[int, int] = defaultdict(int)
    nodes = []
    for level in range(1, pool.plan.levels + 1):
        tree = pool.levels[level]
        for slot in range(len(tree.owner)):
            owner = tree.owner[slot]
            if owner < 0:
                continue
            reserved[owner] += tree.reserved[slot]
            nodes.append((level, slot, wallets[owner], tree.filled[slot]))
    return {
        "balances": {
            wallets[pid]: (pool.pending[pid], pool.held[pid], reserved[pid])
            for pid in range(pool.participant_count)
        },
        "nodes": nodes,
    }


@pytest.mark.parametrize("plan_name", list(PLANS))
async def test_the_ledger_settles_what_the_engine_settles(
    db_engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], plan_name: str
) -> None:
    plan = PLANS[plan_name]
    rng = random.Random(plan_name)
    await truncate_all(db_engine)
    wallets = [Account.create().address]  # participant id -> wallet; 0 is the company
    async with unit_of_work(sessions) as s:
        await seed(s, wallets[0], plan)
    pool = MemoryPool(plan, record=True)
    expected: dict[int, Counter[Line]] = {}
    nonce = 0
    for _ in range(48):
        nonce += 1
        steps_before = len(pool.steps or [])
        if len(wallets) > 3 and rng.random() < 0.2:  # a retopup by a participant
            payer = rng.randrange(1, len(wallets))
            pool.retopup(payer)
            expected[nonce] = engine_lines((pool.steps or [])[steps_before:], wallets)
            async with unit_of_work(sessions) as s:
                await confirm_retopup(s, wallets[payer], plan, nonce)
            continue
        sponsor = rng.randrange(len(wallets))
        pid = pool.register(sponsor)
        slot = pool.levels[1].owner.tolist().index(pid)
        wallets.append(Account.create().address)
        expected[nonce] = engine_lines((pool.steps or [])[steps_before:], wallets)
        payload = {
            "user": wallets[pid],
            "referrer": wallets[sponsor],
            "slot": slot,
            "amount": plan.entry_price,
            "planHash": plan.plan_hash_hex(),
            "nonce": nonce,
        }
        async with unit_of_work(sessions) as s:
            await confirm_registration(s, payload)

    assert pool.completions > 0  # the sequence reached what this test is about
    if plan_name in ("progression", "cascade"):
        assert pool.progressions > 0
    assert await ledger_balances(sessions) == engine_balances(pool, wallets)
    lines = await ledger_lines(sessions)
    assert {n: lines[n] for n in expected} == expected
