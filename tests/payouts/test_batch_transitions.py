"""The batch state machine (DESIGN §3): a batch is signed once, from `built`; every other
transition is refused before anything is asked of the signer or sent to the chain."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from eth_account.signers.local import LocalAccount
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web3 import Web3

from backend.chain.signer_client import Signature, SignerClient
from backend.core.db import unit_of_work
from backend.core.settings import Settings
from backend.core.wiring import open_resources
from backend.models import PayoutBatch
from backend.payouts import service
from backend.payouts.errors import BatchWrongState
from listener.sync import ChainSync
from tests.fixtures.flows import sponsor_chain


class CountingSigner:
    """The real signer service's client, counting what is asked of it."""

    def __init__(self, inner: SignerClient) -> None:
        self.inner = inner
        self.calls: list[str] = []

    async def sign(self, primary_type: str, message: dict[str, Any]) -> Signature:
        self.calls.append(primary_type)
        return await self.inner.sign(primary_type, message)


@pytest.fixture
async def signer(settings: Settings) -> Any:
    async with SignerClient(
        settings.signer_url, settings.signer_token.get_secret_value()
    ) as client:
        yield CountingSigner(client)


async def built_batch(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with unit_of_work(sessions) as s:
        batch = await service.build_batch(
            s, max_recipients=200, deadline_seconds=900, created_by="test"
        )
        return batch.id


async def set_status(
    sessions: async_sessionmaker[AsyncSession], batch_id: int, status: str
) -> None:
    async with unit_of_work(sessions) as s:
        await s.execute(update(PayoutBatch).where(PayoutBatch.id == batch_id).values(status=status))


async def sign(
    sessions: async_sessionmaker[AsyncSession], signer: CountingSigner, batch_id: int
) -> PayoutBatch:
    async with unit_of_work(sessions) as s:
        return await service.sign_batch(s, signer, batch_id)


async def test_signing_twice_asks_the_signer_once_and_returns_the_same_signature(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    signer: CountingSigner,
) -> None:
    await sponsor_chain(api, w3, chain_sync, company.address, 2)
    batch_id = await built_batch(sessions)
    first = await sign(sessions, signer, batch_id)
    again = await sign(sessions, signer, batch_id)
    assert first.status == again.status == "signed"
    assert again.signature == first.signature
    assert signer.calls == ["PayoutBatch"]


@pytest.mark.parametrize("status", ["submitted", "executed", "expired"])
async def test_a_batch_past_signing_is_refused_without_calling_the_signer(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    signer: CountingSigner,
    status: str,
) -> None:
    await sponsor_chain(api, w3, chain_sync, company.address, 2)
    unsigned = await built_batch(sessions)
    await set_status(sessions, unsigned, status)
    with pytest.raises(BatchWrongState):
        await sign(sessions, signer, unsigned)
    assert signer.calls == []


async def test_an_executed_batch_is_not_signed_again_even_with_its_signature_kept(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    signer: CountingSigner,
) -> None:
    await sponsor_chain(api, w3, chain_sync, company.address, 2)
    batch_id = await built_batch(sessions)
    await sign(sessions, signer, batch_id)
    for status in ("executed", "expired"):
        await set_status(sessions, batch_id, status)
        with pytest.raises(BatchWrongState):
            await sign(sessions, signer, batch_id)
    assert signer.calls == ["PayoutBatch"]


@pytest.mark.parametrize("status", ["built", "executed", "expired"])
async def test_only_a_signed_batch_is_submitted(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    signer: CountingSigner,
    settings: Settings,
    status: str,
) -> None:
    await sponsor_chain(api, w3, chain_sync, company.address, 2)
    batch_id = await built_batch(sessions)
    if status != "built":
        await sign(sessions, signer, batch_id)
        await set_status(sessions, batch_id, status)
    sender = w3.eth.account.from_key(settings.settlement_sender_key.get_secret_value()).address
    sent_before = w3.eth.get_transaction_count(sender, "pending")
    with pytest.raises(BatchWrongState):
        async with unit_of_work(sessions) as s:
            await service.check_submittable(s, batch_id)
    async with open_resources(settings, signer=signer) as res:
        report = await service.send_signed(res)
    assert report.submitted == []
    assert w3.eth.get_transaction_count(sender, "pending") == sent_before
