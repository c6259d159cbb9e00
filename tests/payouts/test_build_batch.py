"""Building a payout batch: frozen participants are never batched and their rewards stay as
they were (DESIGN §4, "Frozen")."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from eth_account.signers.local import LocalAccount
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web3 import Web3

from backend.core.db import unit_of_work
from backend.core.settings import Settings
from backend.core.wiring import open_resources
from backend.models import PayoutBatch, PayoutLine, Reward, User
from backend.payouts import service
from backend.payouts.errors import NothingToPay
from backend.users import service as users
from listener.sync import ChainSync
from tests.fixtures.flows import register_and_confirm, sponsor_chain
from tests.fixtures.services import new_wallet


async def rewards_of(sessions: async_sessionmaker[AsyncSession], wallet: str) -> list[Any]:
    async with sessions() as s:
        rows = await s.execute(
            select(Reward.id, Reward.amount, Reward.status, Reward.batch_id)
            .join(User, User.id == Reward.user_id)
            .where(User.wallet == wallet)
            .order_by(Reward.id)
        )
        return [tuple(r) for r in rows.all()]


async def set_frozen(
    sessions: async_sessionmaker[AsyncSession], w3: Web3, wallet: str, frozen: bool
) -> None:
    """An admin's freeze, effective from the next block (as the admin route does it)."""
    async with unit_of_work(sessions) as s:
        user_id = await s.scalar(select(User.id).where(User.wallet == wallet))
        assert user_id is not None
        await users.set_frozen(
            s, user_id, frozen, block=int(w3.eth.block_number) + 1, actor="test", reason=None
        )


async def build(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with unit_of_work(sessions) as s:
        batch = await service.build_batch(
            s, max_recipients=200, deadline_seconds=900, created_by="test"
        )
        return batch.id


async def recipients(sessions: async_sessionmaker[AsyncSession], batch_id: int) -> set[str]:
    async with sessions() as s:
        return set(
            await s.scalars(select(PayoutLine.recipient).where(PayoutLine.batch_id == batch_id))
        )


async def test_frozen_participants_are_never_batched_and_their_rewards_stay_as_they_were(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
) -> None:
    a, b, _c = await sponsor_chain(api, w3, chain_sync, company.address, 3)
    await set_frozen(sessions, w3, a.address, True)
    # A newcomer placed under `a` (slot 4's parent is slot 1): the frozen parent's share is held.
    await register_and_confirm(api, w3, chain_sync, new_wallet(w3), company.address)
    frozen_rewards = await rewards_of(sessions, a.address)
    assert {status for _, _, status, _ in frozen_rewards} == {"pending", "held"}

    batch = await build(sessions)
    assert await recipients(sessions, batch) == {company.address, b.address}
    assert await rewards_of(sessions, a.address) == frozen_rewards

    # Only the frozen participant still has pending rewards: there is nothing to batch.
    with pytest.raises(NothingToPay):
        await build(sessions)
    assert await rewards_of(sessions, a.address) == frozen_rewards


async def test_a_batch_refused_for_a_recipient_frozen_after_it_was_built_is_released_at_once(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    settings: Settings,
) -> None:
    a, b, _c = await sponsor_chain(api, w3, chain_sync, company.address, 3)
    batch = await build(sessions)
    assert b.address in await recipients(sessions, batch)
    await set_frozen(sessions, w3, b.address, True)  # after the build, before the signature

    async with open_resources(settings) as res:
        assert await service.sign_built(res) == []  # the signer refuses: b is frozen
    async with sessions() as s:
        released = await s.get(PayoutBatch, batch)
        assert released is not None and released.status == "expired"
    # Nothing of it stays batched; the next batch pays everyone else, without b.
    assert {status for _, _, status, _ in await rewards_of(sessions, b.address)} == {"pending"}
    rebuilt = await build(sessions)
    assert await recipients(sessions, rebuilt) == {company.address, a.address}
