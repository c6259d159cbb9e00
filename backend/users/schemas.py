"""Request and response models of the users domain. Wei travels as decimal strings."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from backend.core.types import Wallet, WeiStr


class RegisterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    wallet: Wallet
    referrer: Wallet


class RegistrationPayload(BaseModel):
    """The EIP-712 `Registration` message exactly as signed."""

    user: str
    referrer: str
    slot: WeiStr
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
