from __future__ import annotations

from pydantic import BaseModel

from backend.core.types import WeiStr


class Liabilities(BaseModel):
    pending: WeiStr
    held: WeiStr
    reserved: WeiStr
    batched: WeiStr
    claimable: WeiStr
    total: WeiStr


class TreasurySummary(BaseModel):
    """Both sides of the conservation invariant at the listener's last confirmed block."""

    block: int
    contract_balance: WeiStr
    inflows: WeiStr
    outflows: WeiStr
    liabilities: Liabilities
    chain_difference: int  # contract_balance − (inflows − outflows); 0 when sound
    ledger_difference: int  # contract_balance − liabilities.total; 0 when sound
    balanced: bool
