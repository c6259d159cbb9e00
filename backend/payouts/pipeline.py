"""Build → sign → submit one payout batch, each step its own transaction, so a crash between
steps leaves a batch that the next run picks up where it stopped."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web3 import AsyncHTTPProvider, AsyncWeb3

from backend.chain.contract import AutoPoolABI
from backend.chain.signer_client import SignerClient
from backend.core.context import PayloadSigner
from backend.core.db import make_engine, make_sessionmaker, unit_of_work
from backend.core.settings import Settings
from backend.models import PayoutBatch
from backend.payouts import service
from backend.payouts.errors import NothingToPay


@dataclass
class SettlementResult:
    batch_id: int | None
    recipients: int = 0
    total: int = 0
    tx_hash: str | None = None


async def settle_once(
    sessions: async_sessionmaker[AsyncSession],
    signer: PayloadSigner,
    w3: AsyncWeb3[Any],
    settings: Settings,
    *,
    created_by: str = "worker",
    progress: Callable[[str], None] = lambda _msg: None,
) -> SettlementResult:
    """Finish any batch left built or signed; otherwise build a new one. Submit it."""
    abi = AutoPoolABI(settings.contract_address)
    async with unit_of_work(sessions) as session:
        batch_id = await session.scalar(
            select(PayoutBatch.id)
            .where(PayoutBatch.status.in_(("built", "signed")))
            .order_by(PayoutBatch.id)
            .limit(1)
        )
    if batch_id is None:
        try:
            async with unit_of_work(sessions) as session:
                batch = await service.build_batch(
                    session,
                    max_recipients=settings.max_batch_recipients,
                    deadline_seconds=settings.batch_deadline_seconds,
                    created_by=created_by,
                )
                batch_id = batch.id
                progress(
                    f"built batch {batch.id}: {batch.recipient_count} recipients, {batch.total} wei"
                )
        except NothingToPay:
            progress("nothing to pay")
            return SettlementResult(None)
    async with unit_of_work(sessions) as session:
        batch = await service.sign_batch(session, signer, batch_id)
        progress(f"signed batch {batch_id}: digest {batch.digest}")
    async with unit_of_work(sessions) as session:
        batch = await service.submit_batch(
            session, w3, abi, settings.settlement_sender_key, batch_id
        )
        progress(f"submitted batch {batch_id}: tx {batch.tx_hash}")
        return SettlementResult(batch.id, batch.recipient_count, int(batch.total), batch.tx_hash)


async def settle_with_settings(
    settings: Settings, progress: Callable[[str], None] = lambda _msg: None
) -> SettlementResult:
    engine = make_engine(settings.database_url)
    signer = SignerClient(settings.signer_url, settings.signer_token)
    try:
        return await settle_once(
            make_sessionmaker(engine),
            signer,
            AsyncWeb3(AsyncHTTPProvider(settings.rpc_url)),
            settings,
            progress=progress,
        )
    finally:
        await signer.aclose()
        await engine.dispose()
