"""Request and response models of the users domain. Wei travels as decimal strings."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from backend.core.types import Wallet, WeiStr


class RegisterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    referrer: Wallet
    wallet: Wallet | None = Field(
        default=None,
        description="Optional; must be the signed-in wallet (registration is for oneself)",
    )


class RegistrationPayload(BaseModel):
    """The EIP-712 `Registration` message exactly as signed."""

    user: str
    referrer: str
    slot: WeiStr
    amount: WeiStr
    planHash: str
    nonce: WeiStr
    deadline: int


class RetopupPayload(BaseModel):
    """The EIP-712 `Retopup` message exactly as signed."""

    user: str
    amount: WeiStr
    planHash: str
    nonce: WeiStr
    deadline: int


class WalletTx(BaseModel):
    """What the wallet sends: `eth_sendTransaction` fields."""

    to: str
    data: str
    value: WeiStr
    chainId: int


class RegistrationOut(BaseModel):
    payload: RegistrationPayload
    signature: str
    deadline: int
    nonce: WeiStr
    tx: WalletTx
    primaryType: str = Field(default="Registration")


class RetopupOut(BaseModel):
    payload: RetopupPayload
    signature: str
    deadline: int
    nonce: WeiStr
    tx: WalletTx
    primaryType: str = Field(default="Retopup")


class ConfirmIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    txHash: str = Field(pattern=r"^0x[0-9a-fA-F]{64}$")


class ConfirmOut(BaseModel):
    """What the chain says of a registration transaction; the ledger is the listener's to
    write (`final` means it is, or is about to be, in the ledger)."""

    state: Literal["unknown", "pending", "reverted", "included", "final"]
    txHash: str
    block: int | None = None
    confirmations: int = 0
    slot: int | None = None
    ledger: Literal["pending", "active"] | None = None


class Balances(BaseModel):
    """Wei by status (what the ledger owes or paid this participant) and by reward type."""

    byStatus: dict[str, WeiStr]
    byType: dict[str, dict[str, WeiStr]]


class Position(BaseModel):
    level: int
    slot: int
    filled: int = Field(description="Confirmed nodes of its 14-node matrix")
    completed: bool
    reserved: WeiStr


class PendingRegistration(BaseModel):
    slot: int
    deadline: int
    nonce: WeiStr
    signed: bool


class ReferralStats(BaseModel):
    direct: int
    active: int


class MeOut(BaseModel):
    id: int
    wallet: str
    status: str
    roles: list[str]
    referrer: str | None
    frozen: bool
    hasRetopup: bool
    balances: Balances
    referrals: ReferralStats
    positions: list[Position]
    pendingRegistration: PendingRegistration | None
    pendingEvents: list[PendingEventOut] = Field(
        default_factory=list, description="Events in blocks not final yet (not in the ledger)"
    )


class Referral(BaseModel):
    id: int
    wallet: str
    status: str
    activatedBlock: int | None


class ReferralPage(BaseModel):
    items: list[Referral]
    nextCursor: int | None


class ReferralNode(BaseModel):
    id: int
    wallet: str
    status: str
    children: list[ReferralNode]


class PoolNodeView(BaseModel):
    slot: int
    wallet: str
    filled: int
    completed: bool


class TreeOut(BaseModel):
    depth: int
    truncated: bool = Field(description="More nodes exist below `depth` or beyond the node cap")
    referrals: ReferralNode
    pool: list[PoolNodeView] = Field(
        description="The participant's level-1 node and its descendants within `depth` layers"
    )


class HistoryItem(BaseModel):
    kind: Literal["reward", "retopup", "transaction"]
    id: int
    at: datetime
    amount: WeiStr
    status: str | None = None
    type: str | None = Field(default=None, description="Reward type (DIRECT, POOL_L1, ...)")
    level: int | None = None
    batchId: int | None = None
    txHash: str | None = None
    nonce: WeiStr | None = None


class PendingEventOut(BaseModel):
    """A contract event concerning the participant in a block that is not final yet: it may
    still vanish in a reorg, and the ledger has not applied it."""

    name: str
    blockNumber: int
    txHash: str
    amount: WeiStr | None


class HistoryPage(BaseModel):
    items: list[HistoryItem]
    nextCursor: int | None
    pending: list[PendingEventOut] = Field(
        default_factory=list, description="Events in blocks not final yet (not in the ledger)"
    )
