from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

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
    surplus: WeiStr = 0
    """The contract's `surplus()`: BNB no event accounts for (docs/settlement.md "Surplus")."""
    surplus_uncredited: WeiStr = 0
    """Of it, what the reconciliation job has not credited to the company yet."""
    # contract_balance − surplus − (inflows + Σ SurplusDrawn − outflows); 0 when sound
    chain_difference: int
    # contract_balance − surplus_uncredited − liabilities.total (− anomalies); 0 when sound
    ledger_difference: int
    balanced: bool


class TransferIn(BaseModel):
    """Propose (`amount` and `reason`) or approve (`transferId`) a treasury transfer."""

    model_config = ConfigDict(extra="forbid")

    transferId: int | None = Field(default=None, ge=1, le=2**62)
    amount: WeiStr | None = None
    reason: str | None = Field(default=None, min_length=3, max_length=500)

    @model_validator(mode="after")
    def _one_intent(self) -> TransferIn:
        proposing = self.amount is not None or self.reason is not None
        if self.transferId is not None and proposing:
            raise ValueError("either transferId (approve) or amount and reason (propose)")
        if self.transferId is None and (self.amount is None or self.reason is None):
            raise ValueError("a proposal needs amount and reason")
        if self.amount is not None and int(self.amount) <= 0:
            raise ValueError("amount must be positive")
        return self


class TransferOut(BaseModel):
    id: int
    amount: WeiStr
    reason: str
    status: str
    proposedBy: str
    approvals: list[str]
    required: int
