"""The fast raw-log decoder gives exactly what web3's `process_log` gives, for every event the
contract emitted in a registration-and-payout flow (admin events of the deployment included)."""

from __future__ import annotations

import httpx
from eth_account.signers.local import LocalAccount
from web3 import AsyncHTTPProvider, AsyncWeb3, Web3

from backend.chain.events import EventDecoder
from backend.core.settings import Settings
from backend.core.wiring import open_resources
from backend.payouts.service import settle_once
from listener.sync import ChainSync
from tests.fixtures.flows import sponsor_chain
from tests.fixtures.services import Deployment
from tests.fixtures.wallets import mine


async def test_raw_and_web3_decoding_agree_on_every_event(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    company: LocalAccount,
    settings: Settings,
    deployment: Deployment,
) -> None:
    await sponsor_chain(api, w3, chain_sync, company.address, 3)
    async with open_resources(settings) as res:
        assert (await settle_once(res)).batch_id is not None
    mine(w3, 1)
    address = deployment.contract.address
    query = {"address": address, "fromBlock": "0x0", "toBlock": "latest"}
    raw_logs = w3.provider.make_request("eth_getLogs", [query])["result"]  # type: ignore[arg-type]
    web3_logs = w3.eth.get_logs({"address": address, "fromBlock": 0, "toBlock": "latest"})
    decoder = EventDecoder(AsyncWeb3(AsyncHTTPProvider(settings.rpc_url)), address)

    raw = [decoder.decode_raw(entry) for entry in raw_logs]
    reference = [decoder.decode(entry) for entry in web3_logs]
    assert raw == reference
    names = {decoded[0] for decoded in raw if decoded is not None}
    assert {"RegistrationAccepted", "PayoutExecuted", "BatchExecuted", "SignerRotated"} <= names
