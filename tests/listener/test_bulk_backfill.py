"""A backfill settles in bulk (backend.ledger.bulk) and writes what the per-event path writes,
row for row, from real chain logs: registrations leased and signed through the API (their
pending users, leases, payloads and placements are confirmed by the run), on top of a ledger
holding earlier events, with one registration in the run the ledger cannot settle (a plan hash
never published), which the bulk path hands back to the per-event path to record as an
anomaly while the rest of the range is settled."""

from __future__ import annotations

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web3 import Web3

from backend.chain.typed_data import Domain, full_message
from backend.models import Anomaly, ChainEvent
from devtools.wallet import send_as_wallet
from listener.sync import ChainSync
from tests.fixtures.flows import request_registration, sponsor_chain
from tests.fixtures.ledger import ledger_rows_without_times, restore_tables, save_tables
from tests.fixtures.services import Deployment, new_wallet
from tests.fixtures.wallets import mine


def register_with_unknown_plan(w3: Web3, deployment: Deployment, referrer: str) -> None:
    """A registration the signer key signed for a plan the backend never published."""
    wallet = new_wallet(w3)
    contract = deployment.contract
    msg = {
        "user": wallet.address,
        "referrer": referrer,
        "slot": 1_000,
        "amount": 20 * 10**18,
        "planHash": "0x" + keccak(text="never published").hex(),
        "nonce": 10**9,
        "deadline": int(w3.eth.get_block("latest")["timestamp"]) + 86_400,
    }
    doc = full_message(Domain(w3.eth.chain_id, contract.address), "Registration", msg)
    signature = Account.sign_typed_data(deployment.signer_key, full_message=doc).signature
    fields = ("user", "referrer", "slot", "amount", "planHash", "nonce", "deadline")
    tx = contract.functions.register(tuple(msg[k] for k in fields), signature).build_transaction(
        {"from": wallet.address, "value": msg["amount"], "nonce": 0, "gas": 300_000}
    )
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(wallet.sign_transaction(tx).raw_transaction)
    )
    assert receipt["status"] == 1


async def test_a_backfill_in_bulk_writes_the_per_event_ledger(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    deployment: Deployment,
) -> None:
    sponsors = await sponsor_chain(api, w3, chain_sync, company.address, 3)
    referrers = [company.address, *(s.address for s in sponsors)]
    for i in range(5):  # slots 4..8: every slot whose parent is confirmed
        acct = new_wallet(w3)
        body = await request_registration(api, acct, referrers[i % 4])
        assert send_as_wallet(w3, acct, body["tx"])["status"] == 1
        if i == 2:
            register_with_unknown_plan(w3, deployment, company.address)
    mine(w3, chain_sync.confirmations)
    saved = await save_tables(sessions)

    chain_sync.bulk_min_events = 10**9  # event by event
    await chain_sync.sync_once()
    per_event = await ledger_rows_without_times(sessions)
    await restore_tables(sessions, saved)
    chain_sync.bulk_min_events = 1
    await chain_sync.sync_once()
    in_bulk = await ledger_rows_without_times(sessions)

    for table in per_event:
        assert in_bulk[table] == per_event[table], table
    async with sessions() as s:
        settled = await s.scalar(
            select(func.count()).where(
                ChainEvent.name == "RegistrationAccepted", ChainEvent.processed_at.is_not(None)
            )
        )
        anomalies = list(await s.scalars(select(Anomaly.kind)))
    assert settled == 3 + 5 + 1
    assert anomalies == ["unexpected-RegistrationAccepted"]
