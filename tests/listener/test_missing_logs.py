"""Missing logs are detected, not trusted away: a provider whose `eth_getLogs` over a range
silently leaves out a block's logs (as overloaded or lagging providers do) does not make the
listener skip them. The block's `logsBloom` names the contract, so the listener asks for that
block's logs by hash before it moves its cursor past it.

The faulty provider is a real HTTP JSON-RPC proxy in front of the test's Anvil: it answers every
call from Anvil and drops, from range queries only, the logs of the blocks it is told to."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import httpx
import pytest
from aiohttp import web
from eth_account.signers.local import LocalAccount
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web3 import AsyncHTTPProvider, AsyncWeb3, Web3

from backend.chain.rpc import RpcClient, bloom_may_contain
from backend.core.settings import Settings
from backend.models import User
from devtools.anvil import AnvilNode
from devtools.processes import free_port
from devtools.wallet import send_as_wallet
from listener.sync import ChainSync
from tests.fixtures.flows import request_registration
from tests.fixtures.services import new_wallet
from tests.fixtures.wallets import mine


@dataclass
class LossyProvider:
    url: str
    drop_blocks: set[int] = field(default_factory=set)
    dropped: int = 0


@pytest.fixture
async def lossy(anvil: AnvilNode) -> AsyncIterator[LossyProvider]:
    provider = LossyProvider(url="")
    upstream = aiohttp.ClientSession()

    async def relay(request: web.Request) -> web.Response:
        body = await request.json()
        async with upstream.post(anvil.rpc_url, json=body) as r:
            reply = await r.json(content_type=None)
        ranged = (
            isinstance(body, dict)
            and body.get("method") == "eth_getLogs"
            and "blockHash" not in body["params"][0]
            and isinstance(reply, dict)
            and isinstance(reply.get("result"), list)
        )
        if ranged:
            kept = [
                x for x in reply["result"] if int(x["blockNumber"], 16) not in provider.drop_blocks
            ]
            provider.dropped += len(reply["result"]) - len(kept)
            reply["result"] = kept
        return web.Response(text=json.dumps(reply), content_type="application/json")

    app = web.Application()
    app.router.add_post("/", relay)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    provider.url = f"http://127.0.0.1:{port}"
    try:
        yield provider
    finally:
        await runner.cleanup()
        await upstream.close()


async def user_status(sessions: async_sessionmaker[AsyncSession], wallet: str) -> str | None:
    async with sessions() as s:
        return await s.scalar(select(User.status).where(User.wallet == wallet))


async def test_logs_a_provider_left_out_of_a_range_are_fetched_again_by_block(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    settings: Settings,
    lossy: LossyProvider,
) -> None:
    wallet = new_wallet(w3)
    body = await request_registration(api, wallet, company.address)
    receipt = send_as_wallet(w3, wallet, body["tx"])
    included = int(receipt["blockNumber"])
    contract = bytes.fromhex(settings.contract_address[2:])
    assert bloom_may_contain(w3.eth.get_block(included)["logsBloom"].to_0x_hex(), contract)
    mine(w3, chain_sync.confirmations)
    # An empty block's bloom rules the contract out: those blocks are not asked again.
    assert not bloom_may_contain(w3.eth.get_block("latest")["logsBloom"].to_0x_hex(), contract)
    lossy.drop_blocks.add(included)

    rpc = RpcClient([lossy.url])
    listener_w3 = AsyncWeb3(AsyncHTTPProvider(anvil_url(w3)))
    sync = ChainSync(
        chain_sync.sessions,
        listener_w3,
        settings.chain_id,
        settings.contract_address,
        confirmations=chain_sync.confirmations,
        rpc=rpc,
    )
    try:
        await sync.sync_once()
    finally:
        await rpc.aclose()
        await listener_w3.provider.disconnect()
    assert lossy.dropped >= 1, "the provider did leave the block's logs out of the range"
    assert await user_status(sessions, wallet.address) == "active"


def anvil_url(w3: Web3) -> str:
    return str(w3.provider.endpoint_uri)  # type: ignore[attr-defined]
