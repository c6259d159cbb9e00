"""Reconciliation: contract balance == Σ confirmed inflows − Σ confirmed outflows, and ==
the ledger's liabilities (DESIGN §4). Every figure comes from the chain or the ledger."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from web3 import AsyncWeb3

from backend.models import LIABILITY_STATUSES, BlockchainSync, ChainEvent, Reward
from backend.treasury.schemas import Liabilities, TreasurySummary

INFLOW_EVENTS = ("RegistrationAccepted", "RetopupCompleted")
OUTFLOW_EVENTS = ("PayoutExecuted", "Claimed")


async def _event_sum(session: AsyncSession, names: tuple[str, ...]) -> int:
    total = await session.scalar(
        select(
            func.coalesce(func.sum(ChainEvent.args["amount"].astext.cast(Reward.amount.type)), 0)
        ).where(ChainEvent.name.in_(names))
    )
    return int(total or 0)


async def summary(session: AsyncSession, w3: AsyncWeb3[Any], contract: str) -> TreasurySummary:
    block = await session.scalar(select(func.max(BlockchainSync.last_block)))
    block = int(block) if block is not None else 0
    rows = (
        await session.execute(
            select(Reward.status, func.sum(Reward.amount))
            .where(Reward.status.in_(LIABILITY_STATUSES))
            .group_by(Reward.status)
        )
    ).all()
    by_status = {status: int(total) for status, total in rows}
    owed = {s: by_status.get(s, 0) for s in LIABILITY_STATUSES}
    total = sum(owed.values())
    inflows = await _event_sum(session, INFLOW_EVENTS)
    outflows = await _event_sum(session, OUTFLOW_EVENTS)
    # The balance at the block the ledger has reached, so both sides describe the same moment.
    balance = int(await w3.eth.get_balance(AsyncWeb3.to_checksum_address(contract), block))
    chain_diff = balance - (inflows - outflows)
    ledger_diff = balance - total
    return TreasurySummary(
        block=block,
        contract_balance=balance,
        inflows=inflows,
        outflows=outflows,
        liabilities=Liabilities(**owed, total=total),
        chain_difference=chain_diff,
        ledger_difference=ledger_diff,
        balanced=chain_diff == 0 and ledger_diff == 0,
    )
