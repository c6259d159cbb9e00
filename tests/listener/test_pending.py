"""Events in blocks not final yet are shown to the participant as pending, never applied to
the ledger, and vanish when a reorg removes their block."""

from __future__ import annotations

from typing import Any

import httpx
from eth_account.signers.local import LocalAccount
from web3 import Web3

from devtools import dapp
from devtools.wallet import send_as_wallet
from listener.sync import ChainSync
from tests.fixtures.services import new_wallet
from tests.fixtures.wallets import mine


async def get(api: httpx.AsyncClient, path: str, tokens: dict[str, Any]) -> dict[str, Any]:
    r = await api.get(path, headers=dapp.bearer(tokens))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_a_registration_is_pending_until_final_then_in_the_ledger(
    api: httpx.AsyncClient, w3: Web3, chain_sync: ChainSync, company: LocalAccount
) -> None:
    acct = new_wallet(w3)
    tokens = await dapp.sign_in(api, acct)
    answer = (await dapp.register(api, acct, company.address, tokens)).json()
    receipt = send_as_wallet(w3, acct, answer["tx"])
    await chain_sync.sync_once()  # the block is not final yet

    me = await get(api, "/users/me", tokens)
    tx_hash = receipt["transactionHash"].to_0x_hex()
    assert me["status"] == "pending"
    assert me["pendingEvents"] == [
        {
            "name": "RegistrationAccepted",
            "blockNumber": receipt["blockNumber"],
            "txHash": tx_hash,
            "amount": answer["payload"]["amount"],
        }
    ]
    history = await get(api, f"/users/{me['id']}/history", tokens)
    assert [e["txHash"] for e in history["pending"]] == [tx_hash]

    mine(w3, chain_sync.confirmations)
    await chain_sync.sync_once()
    me = await get(api, "/users/me", tokens)
    assert me["status"] == "active"
    assert me["pendingEvents"] == []


async def test_a_reorg_inside_the_window_drops_the_pending_events_of_replaced_blocks(
    api: httpx.AsyncClient, w3: Web3, chain_sync: ChainSync, company: LocalAccount
) -> None:
    acct = new_wallet(w3)
    tokens = await dapp.sign_in(api, acct)
    answer = (await dapp.register(api, acct, company.address, tokens)).json()
    fork = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    send_as_wallet(w3, acct, answer["tx"])
    await chain_sync.sync_once()
    assert len((await get(api, "/users/me", tokens))["pendingEvents"]) == 1

    # Another history replaces the block (shallower than finality): the event is gone.
    w3.provider.make_request("evm_revert", [fork])  # type: ignore[arg-type]
    mine(w3, 1)
    await chain_sync.sync_once()
    me = await get(api, "/users/me", tokens)
    assert me["pendingEvents"] == []
    assert me["status"] == "pending"
