"""The resources a process builds once and every request, job or range then uses: database
engine and sessions, chain client, signer client, contract calldata, compensation plan.

The API builds them in its lifespan, the listener and the CLI at start, and the settlement
worker once per worker process (`worker_resources`), never once per message.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from web3 import AsyncHTTPProvider, AsyncWeb3

from backend.chain.contract import AutoPoolABI
from backend.chain.signer_client import Signature, SignerClient
from backend.core.db import StatementPool, make_engine, make_sessionmaker
from backend.core.security import TokenCodec
from backend.core.settings import Settings, get_settings
from backend.plan.config import DEFAULT_PLAN_PATH, PlanConfig, load_plan


class PayloadSigner(Protocol):
    """What asks the signer service for a signature (backend.chain.signer_client.SignerClient)."""

    async def sign(self, primary_type: str, message: dict[str, Any]) -> Signature: ...


def current_plan(plan_path: str = "") -> PlanConfig:
    """The plan in force for new payloads: the configured document, or the packaged plan v1."""
    return load_plan(Path(plan_path) if plan_path else DEFAULT_PLAN_PATH)


@dataclass
class Resources:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    statements: StatementPool  # one-statement reads and writes of the hottest routes
    w3: AsyncWeb3[Any]
    signer: PayloadSigner
    abi: AutoPoolABI
    plan: PlanConfig
    plan_hash: str
    tokens: TokenCodec
    redis: Redis
    limiter: MovingWindowRateLimiter
    registrations: asyncio.Semaphore  # settings.registration_concurrency
    _owned_signer: SignerClient | None = field(default=None, repr=False)

    async def aclose(self) -> None:
        if self._owned_signer is not None:
            await self._owned_signer.aclose()
        await self.redis.aclose()
        await self.w3.provider.disconnect()
        await self.statements.aclose()
        await self.engine.dispose()


def build_resources(
    settings: Settings, *, signer: PayloadSigner | None = None, **engine_kwargs: Any
) -> Resources:
    """Everything a process needs, built once. `signer` replaces the signer service's client."""
    engine = make_engine(settings.database_url.get_secret_value(), **engine_kwargs)
    owned = None
    if signer is None:
        owned = SignerClient(settings.signer_url, settings.signer_token.get_secret_value())
        signer = owned
    plan = current_plan(settings.plan_path)
    limits_uri = settings.redis_url.replace("redis://", "async+redis://", 1)
    redis = Redis.from_url(settings.redis_url)
    return Resources(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine, {"publisher": redis}),
        statements=StatementPool(settings.database_url.get_secret_value()),
        w3=AsyncWeb3(AsyncHTTPProvider(settings.rpc_url)),
        signer=signer,
        abi=AutoPoolABI(settings.contract_address),
        plan=plan,
        plan_hash=plan.plan_hash_hex(),
        tokens=TokenCodec(settings.jwt_secret.get_secret_value(), settings.access_token_seconds),
        redis=redis,
        limiter=MovingWindowRateLimiter(RedisStorage(limits_uri, implementation="redispy")),
        registrations=asyncio.Semaphore(settings.registration_concurrency),
        _owned_signer=owned,
    )


@asynccontextmanager
async def open_resources(
    settings: Settings | None = None, **kwargs: Any
) -> AsyncIterator[Resources]:
    resources = build_resources(settings or get_settings(), **kwargs)
    try:
        yield resources
    finally:
        await resources.aclose()


_per_loop: dict[asyncio.AbstractEventLoop, Resources] = {}


async def worker_resources() -> Resources:
    """The worker process's resources: built on the first job, reused by every later one on
    the same event loop (Dramatiq's AsyncIO middleware runs one loop per worker process)."""
    loop = asyncio.get_running_loop()
    resources = _per_loop.get(loop)
    if resources is None:
        resources = _per_loop[loop] = build_resources(get_settings())
    return resources


async def close_worker_resources() -> None:
    """Close the resources of the running loop (at worker shutdown)."""
    resources = _per_loop.pop(asyncio.get_running_loop(), None)
    if resources is not None:
        await resources.aclose()
