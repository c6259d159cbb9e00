"""Slot leases (DESIGN §3): the lowest free slot is leased; a lease lapses only when a confirmed
block is past its deadline, and then its slot is the next to fill while its payload can never
execute."""

from __future__ import annotations

import httpx
import pytest
from eth_account.signers.local import LocalAccount
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web3 import Web3
from web3.exceptions import ContractLogicError, Web3RPCError

from devtools import dapp
from devtools.wallet import send_as_wallet
from listener.sync import ChainSync
from tests.fixtures.flows import register_and_confirm, request_registration
from tests.fixtures.services import new_wallet
from tests.fixtures.wallets import mine


async def test_children_wait_for_their_parent_slot_to_be_confirmed(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    company: LocalAccount,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    first = await request_registration(api, new_wallet(w3), company.address)
    second = await request_registration(api, new_wallet(w3), company.address)
    assert [int(first["payload"]["slot"]), int(second["payload"]["slot"])] == [1, 2]
    # Slot 3's parent (slot 1) is leased but not confirmed: no slot can be leased yet.
    r = await dapp.register(api, new_wallet(w3), company.address)
    assert r.status_code == 503
    assert r.json()["type"].endswith("/slot-unavailable")
    assert int(r.headers["retry-after"]) > 0
    async with sessions() as s:  # the refusal wrote nothing: two payloads, two leases
        counts = await s.execute(
            text("SELECT (SELECT count(*) FROM transactions), (SELECT count(*) FROM slot_leases)")
        )
        assert tuple(counts.one()) == (2, 2)


async def test_a_lapsed_lease_is_the_next_slot_and_its_payload_is_dead(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    company: LocalAccount,
) -> None:
    slow, fast = new_wallet(w3), new_wallet(w3)
    stale = await request_registration(api, slow, company.address)
    assert int(stale["payload"]["slot"]) == 1
    await register_and_confirm(api, w3, chain_sync, fast, company.address)  # takes slot 2

    # Time passes beyond the lease's deadline, and a block past it is confirmed.
    w3.provider.make_request(
        "evm_increaseTime", [stale["deadline"] - w3.eth.get_block("latest")["timestamp"] + 10]
    )  # type: ignore[arg-type]
    mine(w3, chain_sync.confirmations + 1)
    await chain_sync.sync_once()

    newcomer = new_wallet(w3)
    body = await register_and_confirm(api, w3, chain_sync, newcomer, company.address)
    assert int(body["payload"]["slot"]) == 1  # the lapsed hole is filled first

    with pytest.raises((ContractLogicError, Web3RPCError)):
        send_as_wallet(w3, slow, stale["tx"])  # deadline passed: the contract refuses it

    # The slow wallet can register again and gets a fresh lease on the lowest free slot.
    again = await request_registration(api, slow, company.address)
    assert int(again["payload"]["slot"]) == 3
    assert again["signature"] != stale["signature"]
