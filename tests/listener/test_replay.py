"""Ingesting the same blocks again (a restart, a second listener, an operator replay) settles
nothing twice."""

from __future__ import annotations

import httpx
from eth_account.signers.local import LocalAccount
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web3 import Web3

from backend.core.db import unit_of_work
from backend.models import BlockchainSync, ChainEvent, PoolNode, Reward, UserBalance
from listener.sync import ChainSync
from tests.fixtures.flows import register_and_confirm
from tests.fixtures.services import new_wallet


async def ledger_snapshot(sessions: async_sessionmaker[AsyncSession]) -> tuple[object, ...]:
    async with sessions() as s:
        return (
            await s.scalar(select(func.count()).select_from(ChainEvent)),
            await s.scalar(select(func.count()).select_from(Reward)),
            await s.scalar(select(func.coalesce(func.sum(Reward.amount), 0))),
            await s.scalar(select(func.count()).select_from(PoolNode)),
            tuple((await s.execute(select(UserBalance).order_by(UserBalance.user_id))).scalars()),
        )


async def test_replaying_confirmed_blocks_settles_nothing_twice(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
) -> None:
    a, b = new_wallet(w3), new_wallet(w3)
    await register_and_confirm(api, w3, chain_sync, a, company.address)
    await register_and_confirm(api, w3, chain_sync, b, a.address)
    before = await ledger_snapshot(sessions)
    balances_before = [(x.user_id, x.pending, x.held, x.reserved) for x in before[-1]]  # type: ignore[attr-defined]

    async with unit_of_work(sessions) as s:  # rewind the cursor to before the deployment
        await s.execute(update(BlockchainSync).values(last_block=-1, last_block_hash=None))
    assert await chain_sync.sync_once() == 0  # every log is already stored and settled

    after = await ledger_snapshot(sessions)
    assert after[:4] == before[:4]
    assert [(x.user_id, x.pending, x.held, x.reserved) for x in after[-1]] == balances_before  # type: ignore[attr-defined]
    assert before[1] > 0 and before[2] == 40 * 10**18  # two entries' worth of lines
