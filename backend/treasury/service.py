"""Reconciliation: contract balance == Σ confirmed inflows − Σ confirmed outflows, and ==
the ledger's liabilities (DESIGN §4). Every figure comes from the chain or the ledger."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from web3 import AsyncWeb3

from backend.monitoring import service as monitoring
from backend.rewards import service as rewards
from backend.treasury import repository as repo
from backend.treasury.schemas import Liabilities, TreasurySummary


async def summary(session: AsyncSession, w3: AsyncWeb3[Any], contract: str) -> TreasurySummary:
    block, _ = await monitoring.confirmed_block(session)
    block = max(block, 0)
    owed = await rewards.liabilities(session)
    total = sum(owed.values())
    inflows = await repo.event_sum(session, repo.INFLOW_EVENTS)
    outflows = await repo.event_sum(session, repo.OUTFLOW_EVENTS)
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
