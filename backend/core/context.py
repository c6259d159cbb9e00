"""Process-wide resources a request or job needs, built once at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web3 import AsyncWeb3

from backend.chain.contract import AutoPoolABI
from backend.chain.signer_client import Signature
from backend.core.settings import Settings
from backend.plan.config import PlanConfig


class PayloadSigner(Protocol):
    """The signer service's client (backend.chain.signer_client.SignerClient)."""

    async def sign(self, primary_type: str, message: dict[str, Any]) -> Signature: ...


@dataclass
class AppContext:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    signer: PayloadSigner
    abi: AutoPoolABI
    plan: PlanConfig
    plan_hash: str
    w3: AsyncWeb3[Any]
