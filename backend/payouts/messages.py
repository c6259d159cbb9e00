"""The EIP-712 `PayoutBatch` message of a batch: what the signer signs and the sender sends."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from backend.models import PayoutBatch
from backend.payouts import repository as repo


async def batch_message(session: AsyncSession, batch: PayoutBatch) -> dict[str, Any]:
    """The EIP-712 `PayoutBatch` message of `batch`, line for line."""
    return {
        "batchId": str(batch.id),
        "payouts": [
            {"recipient": ln.recipient, "amount": str(int(ln.amount))}
            for ln in await repo.lines_of(session, batch.id)
        ],
        "nonce": str(batch.nonce),
        "deadline": batch.deadline,
    }
