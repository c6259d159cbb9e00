"""The raw JSON-RPC client: providers' refusals typed case by case, adaptive ranges, and
failover with retries through a local fault proxy in front of Anvil."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from eth_account import Account
from web3 import Web3

from backend.chain.rpc import (
    AdaptiveRange,
    RangeTooLarge,
    RateLimited,
    RpcClient,
    RpcError,
    Unavailable,
    classify,
)
from devtools.anvil import AnvilNode
from devtools.processes import free_port
from tests.fixtures.services import Deployment
from tests.fixtures.wallets import mine

# (provider, error object, expected type, expected span)
CASES = [
    (
        "Alchemy",
        {
            "code": -32602,
            "message": "Log response size exceeded. You can make eth_getLogs requests with up to a "
            "2K block range and no limit on the response size, or you can request any block "
            "range with a cap of 10K logs in the response. Based on your parameters, this block "
            "range should work: [0x1c9c380, 0x1c9c3e3]",
        },
        RangeTooLarge,
        0x1C9C3E3 - 0x1C9C380 + 1,
    ),
    (
        "Infura",
        {
            "code": -32005,
            "message": "query returned more than 10000 results. Try with this block range "
            "[0x1C9C380, 0x1C9C390].",
        },
        RangeTooLarge,
        17,
    ),
    (
        "BSC geth",
        {"code": -32000, "message": "exceed maximum block range: 5000"},
        RangeTooLarge,
        5000,
    ),
    (
        "Ankr",
        {
            "code": -32600,
            "message": "Block range limit exceeded. Maximum allowed block range: 3000",
        },
        RangeTooLarge,
        3000,
    ),
    (
        "QuickNode",
        {"code": -32614, "message": "eth_getLogs is limited to a 10,000 range"},
        RangeTooLarge,
        10_000,
    ),
    (
        "dRPC",
        {"code": 35, "message": "ranges over 10000 blocks are not supported on freetier"},
        RangeTooLarge,
        10_000,
    ),
    (
        "Erigon",
        {"code": -32000, "message": "query exceeds max results 20000"},
        RangeTooLarge,
        None,
    ),
    (
        "Nethermind",
        {"code": -32005, "message": "Too many logs requested. Max logs: 10000"},
        RangeTooLarge,
        None,
    ),
    ("rate limit -32005", {"code": -32005, "message": "limit exceeded"}, RateLimited, None),
    ("HTTP-style 429", {"code": 429, "message": "Too Many Requests"}, RateLimited, None),
    ("revert", {"code": 3, "message": "execution reverted"}, RpcError, None),
]


@pytest.mark.parametrize(("provider", "error", "kind", "span"), CASES, ids=[c[0] for c in CASES])
def test_provider_refusals_are_typed(
    provider: str, error: dict[str, Any], kind: type[RpcError], span: int | None
) -> None:
    typed = classify(error)
    assert type(typed) is kind, provider
    if isinstance(typed, RangeTooLarge):
        assert typed.span == span


def test_the_range_grows_shrinks_takes_the_suggestion_and_returns_to_the_maximum() -> None:
    r = AdaptiveRange(maximum=1000, probe_every=4)
    r.refused(None)
    assert r.span == 500
    r.refused(120)
    assert r.span == 120
    r.succeeded()
    assert r.span == 240
    r.refused(None)
    assert r.span == 120
    for _ in range(3):
        r.succeeded()
    assert r.span == 960
    r.refused(1)
    r.succeeded(), r.succeeded(), r.succeeded()
    assert r.span == 8
    r.succeeded()  # the 4th success in a row: back to the maximum
    assert r.span == 1000
    r.refused(5000)  # a "suggestion" above the span is no help: halve
    assert r.span == 500


class FaultProxy:
    """Forwards JSON-RPC to Anvil, failing a fraction of calls with HTTP 503 and refusing
    `eth_getLogs` over more than `max_span` blocks the way Alchemy does."""

    def __init__(self, upstream: str, fail_rate: float, max_span: int) -> None:
        self.upstream, self.fail_rate, self.max_span = upstream, fail_rate, max_span
        self.seen = 0
        self.in_flight = self.max_in_flight = 0
        self.calls = {"failed": 0, "refused": 0, "forwarded": 0}

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.seen += 1
        # Every call at a multiple of 1/fail_rate fails: how many fail does not hang on how
        # the client orders its (concurrent) calls.
        if self.seen % round(1 / self.fail_rate) == 0:
            self.calls["failed"] += 1
            return web.Response(status=503, text="upstream busy")
        if isinstance(body, dict) and body["method"] == "eth_getLogs":
            q = body["params"][0]
            start, end = int(q["fromBlock"], 16), int(q["toBlock"], 16)
            if end - start + 1 > self.max_span:
                self.calls["refused"] += 1
                ok = f"[{hex(start)}, {hex(start + self.max_span - 1)}]"
                return web.json_response(
                    {
                        "jsonrpc": "2.0",
                        "id": body["id"],
                        "error": {
                            "code": -32602,
                            "message": "Log response size exceeded. Based on your parameters, "
                            f"this block range should work: {ok}",
                        },
                    }
                )
        self.calls["forwarded"] += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            async with aiohttp.ClientSession() as http, http.post(self.upstream, json=body) as r:
                return web.json_response(await r.json())
        finally:
            self.in_flight -= 1


@pytest.fixture
async def proxy(anvil: AnvilNode) -> AsyncIterator[tuple[FaultProxy, str]]:
    fault = FaultProxy(anvil.rpc_url, fail_rate=0.3, max_span=3)
    app = web.Application()
    app.router.add_post("/", fault.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield fault, f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


async def test_logs_through_a_faulty_provider_equal_the_nodes_own(
    w3: Web3, deployment: Deployment, proxy: tuple[FaultProxy, str]
) -> None:
    fault, url = proxy
    owner = Account.from_key(deployment.owner_key)
    pool = deployment.contract
    for cap in (10**24, 10**23, 10**22, 10**21):  # each lowering logs OutflowCapSet
        w3.eth.send_transaction(
            {
                "from": owner.address,
                "to": pool.address,
                "data": pool.encode_abi("lowerOutflowCap", [cap]),
            }
        )
        mine(w3, 2)
    head = w3.eth.block_number
    expected = w3.provider.make_request(  # type: ignore[arg-type]
        "eth_getLogs", [{"address": pool.address, "fromBlock": "0x0", "toBlock": hex(head)}]
    )["result"]

    # The first URL refuses connections: every call fails over to the proxy.
    client = RpcClient([f"http://127.0.0.1:{free_port()}/", url], backoff=0.01, attempts=12)
    try:
        ranges = AdaptiveRange(maximum=1000)
        logs = await client.logs_in_ranges(pool.address, 0, head, ranges)
    finally:
        await client.aclose()
    assert logs == expected
    assert len(logs) >= 4
    assert fault.calls["failed"] > 0 and fault.calls["refused"] > 0, fault.calls
    # Spans are fetched ahead, a bounded number at a time (`ahead`, 4 by default).
    assert 2 <= fault.max_in_flight <= 4


async def test_an_endpoint_that_never_answers_is_a_typed_error_after_the_retries() -> None:
    client = RpcClient([f"http://127.0.0.1:{free_port()}/"], backoff=0.001, attempts=3)
    try:
        with pytest.raises(Unavailable):
            await client.block_number()
    finally:
        await client.aclose()


async def test_headers_come_in_batches_in_order_through_a_faulty_provider(
    w3: Web3, proxy: tuple[FaultProxy, str]
) -> None:
    fault, url = proxy
    mine(w3, 250)
    head = w3.eth.block_number
    client = RpcClient([url], backoff=0.01, attempts=12)
    try:
        headers = await client.headers(0, head)
        with pytest.raises(RpcError, match="no block"):
            await client.headers(head, head + 1)  # a block the node does not have
    finally:
        await client.aclose()
    assert [int(h["number"], 16) for h in headers] == list(range(head + 1))
    assert headers[-1]["hash"] == w3.eth.get_block(head)["hash"].to_0x_hex()
    # 100 headers a request, so a few requests (some failed and retried), not one per block
    assert fault.calls["forwarded"] <= 6 and fault.calls["failed"] > 0, fault.calls
