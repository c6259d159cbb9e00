"""Shared steps of the settlement tests: a ledger with pending rewards, the sender's rows, the
chain's payouts per recipient."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web3 import Web3
from web3.contract import Contract

from backend.models import PayoutBatch, Reward, RewardStatus, TxAttempt, User


@contextmanager
def automine_off(w3: Web3) -> Iterator[None]:
    """Transactions wait in the mempool until a block is mined explicitly."""
    w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    try:
        yield
    finally:
        w3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]


def mine_expensive_blocks(w3: Web3, count: int, base_fee: int = 10**12) -> None:
    """Mine `count` blocks whose base fee is above what a pending transaction pays, so it stays
    pending (stuck) while the chain moves on."""
    for _ in range(count):
        w3.provider.make_request("anvil_setNextBlockBaseFeePerGas", [hex(base_fee)])  # type: ignore[arg-type]
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


def mine_cheap_block(w3: Web3) -> None:
    w3.provider.make_request("anvil_setNextBlockBaseFeePerGas", [hex(1)])  # type: ignore[arg-type]
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


async def attempts(sessions: async_sessionmaker[AsyncSession]) -> list[TxAttempt]:
    async with sessions() as s:
        return list(await s.scalars(select(TxAttempt).order_by(TxAttempt.id)))


async def batches(sessions: async_sessionmaker[AsyncSession]) -> list[PayoutBatch]:
    async with sessions() as s:
        return list(await s.scalars(select(PayoutBatch).order_by(PayoutBatch.id)))


async def rewards_by_status(sessions: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with sessions() as s:
        rows = await s.execute(
            select(Reward.status, func.coalesce(func.sum(Reward.amount), 0)).group_by(Reward.status)
        )
        return {str(k): int(v) for k, v in rows.all()}


async def settled_per_recipient(sessions: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """Wei paid out (paid or claimable) per wallet, as the ledger says."""
    async with sessions() as s:
        rows = await s.execute(
            select(User.wallet, func.sum(Reward.amount))
            .join(User, User.id == Reward.user_id)
            .where(Reward.status.in_((RewardStatus.PAID, RewardStatus.CLAIMABLE)))
            .group_by(User.wallet)
        )
        return {str(w): int(a) for w, a in rows.all()}


def paid_on_chain_per_recipient(contract: Contract) -> dict[str, int]:
    """Wei each recipient got from `PayoutExecuted` and `PayoutDeferred` logs, from block 0."""
    totals: dict[str, int] = defaultdict(int)
    for event in (contract.events.PayoutExecuted, contract.events.PayoutDeferred):
        for log in event.get_logs(from_block=0):
            totals[str(log["args"]["recipient"])] += int(log["args"]["amount"])
    return dict(totals)


def executed_batch_ids(contract: Contract) -> list[int]:
    return [int(e["args"]["batchId"]) for e in contract.events.BatchExecuted.get_logs(from_block=0)]
