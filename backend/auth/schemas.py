"""Request and response models of sign-in."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from backend.core.security import Role
from backend.core.types import Text, Wallet


class NonceOut(BaseModel):
    nonce: str
    message: str = Field(description="The exact EIP-4361 text for the wallet to sign")
    expiresAt: datetime


class WalletSignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    wallet: Wallet
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]+$", max_length=4_000)
    nonce: str = Field(min_length=8, max_length=64, pattern=r"^[0-9a-zA-Z]+$")
    message: Text | None = Field(
        default=None,
        max_length=4_000,
        description="The signed message, if the wallet did not sign the one GET /auth/nonce gave",
    )


class SignedInUser(BaseModel):
    id: int
    wallet: str
    status: str
    roles: list[Role]


class TokensOut(BaseModel):
    accessToken: str
    refreshToken: str
    tokenType: str = "Bearer"
    expiresIn: int = Field(description="Seconds until the access token expires")
    user: SignedInUser


class RefreshIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refreshToken: str = Field(min_length=16, max_length=256)
