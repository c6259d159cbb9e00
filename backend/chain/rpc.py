"""Raw JSON-RPC for the listener's hot path: several URLs with failover, retries with backoff
and jitter, typed errors, and `eth_getLogs` in adaptive block ranges.

web3.py's formatters cost more than the work on a backfill (every log's fields converted and
re-wrapped); here a log stays the node's JSON until the decoder reads it.

Providers refuse large `eth_getLogs` ranges in their own words, some with the range that would
work. `classify` turns a JSON-RPC error into a typed one from `RANGE_MESSAGES` (tested case by
case in tests/chain/test_rpc.py); `AdaptiveRange` grows the range on success, shrinks it on a
refusal (to the suggested span when there is one), and returns to the maximum now and then so
one refusal cannot pin it at one block.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from eth_utils import keccak
from prometheus_client import Counter

RPC_ERRORS = Counter("autopool_rpc_errors_total", "JSON-RPC failures by type", ["kind"])


class RpcError(Exception):
    kind = "bad-response"


class _Retry(Exception):
    """A JSON-RPC reply that is a rate limit: try again (carries the typed error)."""

    def __init__(self, error: RpcError) -> None:
        super().__init__(str(error))
        self.error = error


class RateLimited(RpcError):
    kind = "rate-limited"


class Unavailable(RpcError):
    """The endpoint did not answer (connection refused, HTTP 5xx): retried on the next URL."""

    kind = "unavailable"


class RpcTimeout(RpcError):
    kind = "timeout"


class RangeTooLarge(RpcError):
    """The provider refused the block range; `span` is the number of blocks it suggested or
    allows, when its message says."""

    kind = "range-too-large"

    def __init__(self, message: str, span: int | None = None) -> None:
        super().__init__(message)
        self.span = span


def _suggested_pair(m: re.Match[str]) -> int:
    return int(m.group(2), 0) - int(m.group(1), 0) + 1


def _limit(m: re.Match[str]) -> int:
    return int(m.group(1).replace(",", ""))


# (pattern, span from the match or None), first match wins. Messages as providers send them.
RANGE_MESSAGES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], int] | None], ...] = (
    # Alchemy: "... this block range should work: [0x1c, 0x5f]"; Infura: "query returned more
    # than 10000 results. Try with this block range [0x1c, 0x5f]."
    (re.compile(r"range should work: \[(0x[0-9a-f]+), (0x[0-9a-f]+)\]", re.I), _suggested_pair),
    (
        re.compile(r"try with this block range \[(0x[0-9a-f]+), ?(0x[0-9a-f]+)\]", re.I),
        _suggested_pair,
    ),
    # geth/BSC nodes with a limit, NodeReal: "exceed maximum block range: 5000"
    (re.compile(r"exceed maximum block range: ?([\d,]+)", re.I), _limit),
    # Ankr, Chainstack: "Block range limit exceeded. Maximum allowed block range: 3000"
    (re.compile(r"maximum allowed block range:? ?([\d,]+)", re.I), _limit),
    # QuickNode: "eth_getLogs is limited to a 10,000 range"
    (re.compile(r"limited to a ([\d,]+) range", re.I), _limit),
    # dRPC, BlastAPI: "ranges over 10000 blocks are not supported"
    (re.compile(r"ranges over ([\d,]+) blocks", re.I), _limit),
    # Erigon / Nethermind / others without a figure.
    (re.compile(r"query returned more than [\d,]+ results", re.I), None),
    (re.compile(r"log response size exceeded", re.I), None),
    (re.compile(r"block range (is )?too (wide|large)", re.I), None),
    (re.compile(r"too many (results|logs|blocks)", re.I), None),
    (re.compile(r"response size (is )?(too large|exceeded)", re.I), None),
    (re.compile(r"query exceeds max results", re.I), None),
)
RATE_MESSAGES = re.compile(
    r"rate limit|too many requests|request limit|exceeded .*capacity|limit exceeded", re.I
)


def classify(error: dict[str, Any]) -> RpcError:
    """The typed error of a JSON-RPC `error` object."""
    message = str(error.get("message", ""))
    data = error.get("data")
    text = f"{message} {data}" if isinstance(data, str) else message
    for pattern, span in RANGE_MESSAGES:
        m = pattern.search(text)
        if m:
            return RangeTooLarge(message, span(m) if span else None)
    if error.get("code") in (429, -32005) or RATE_MESSAGES.search(text):
        return RateLimited(message)
    return RpcError(f"{error.get('code')}: {message}")


@dataclass
class AdaptiveRange:
    """The block span of the next `eth_getLogs`: doubles after a success, halves (or takes
    the provider's figure) after a refusal, and goes back to `maximum` every `probe_every`
    successes so a refusal long ago does not keep it small."""

    maximum: int
    probe_every: int = 64
    span: int = field(init=False)
    _successes: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.span = self.maximum

    def succeeded(self) -> None:
        self._successes += 1
        if self._successes % self.probe_every == 0:
            self.span = self.maximum
        else:
            self.span = min(self.maximum, self.span * 2)

    def refused(self, suggested: int | None) -> None:
        self._successes = 0
        if suggested is not None and 0 < suggested < self.span:
            self.span = suggested
        else:
            self.span = max(1, self.span // 2)


class RpcClient:
    """JSON-RPC over HTTP to the first of `urls` that answers; on a transport failure, a
    timeout or a rate limit it backs off (exponential, with jitter) and tries the next URL.
    JSON-RPC errors other than rate limits are raised at once, typed."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout: float = 20.0,
        attempts: int = 6,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
    ) -> None:
        if not urls:
            raise ValueError("at least one RPC URL")
        self.urls = list(urls)
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._current = 0
        self._id = 0
        self._session: aiohttp.ClientSession | None = None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def call(self, method: str, params: list[Any], *, url: str | None = None) -> Any:
        self._id += 1
        body = {"jsonrpc": "2.0", "id": self._id, "method": method, "params": params}
        return await self._exchange(body, method, url, self._result)

    async def call_batch(
        self, method: str, params: Sequence[list[Any]], *, size: int = 100, concurrency: int = 4
    ) -> list[Any]:
        """`method` with each of `params`, as JSON-RPC batches of `size` calls (`concurrency`
        batches in flight); the results in order. One HTTP round trip per batch instead of
        one per call; any call's error fails the batch (rate limits are retried, as `call`)."""
        gate = asyncio.Semaphore(concurrency)

        async def one(chunk: Sequence[list[Any]]) -> list[Any]:
            first = self._id + 1
            self._id += len(chunk)
            body = [
                {"jsonrpc": "2.0", "id": first + i, "method": method, "params": p}
                for i, p in enumerate(chunk)
            ]

            def results(reply: Any) -> list[Any]:
                if not isinstance(reply, list) or len(reply) != len(chunk):
                    RPC_ERRORS.labels(RpcError.kind).inc()
                    raise RpcError(f"not a JSON-RPC batch reply: {str(reply)[:200]}")
                by_id = {item.get("id"): item for item in reply if isinstance(item, dict)}
                return [self._result(by_id.get(first + i)) for i in range(len(chunk))]

            async with gate:
                out: list[Any] = await self._exchange(body, method, None, results)
                return out

        chunks = [params[i : i + size] for i in range(0, len(params), size)]
        done = await asyncio.gather(*(one(c) for c in chunks))
        return [result for chunk in done for result in chunk]

    @staticmethod
    def _result(reply: Any) -> Any:
        """The result of one JSON-RPC reply; a rate-limit error is raised as `_Retry`."""
        if not isinstance(reply, dict):
            RPC_ERRORS.labels(RpcError.kind).inc()
            raise RpcError(f"not a JSON-RPC reply: {str(reply)[:200]}")
        if "error" not in reply:
            return reply.get("result")
        error = classify(reply["error"])
        if isinstance(error, RateLimited):
            raise _Retry(error)
        RPC_ERRORS.labels(error.kind).inc()
        raise error

    async def _exchange(
        self, body: Any, what: str, url: str | None, read: Callable[[Any], Any]
    ) -> Any:
        """POST `body` and `read` the reply, retrying transport failures, timeouts and rate
        limits with backoff and failover (to the next URL, unless `url` pins one)."""
        last: RpcError = RpcError("no attempt made")
        for attempt in range(self.attempts):
            target = url or self.urls[self._current % len(self.urls)]
            try:
                async with self._http().post(target, json=body) as r:
                    if r.status == 429:
                        raise RateLimited(f"HTTP 429 from {target}")
                    if r.status >= 500:
                        raise Unavailable(f"HTTP {r.status} from {target}")
                    reply = await r.json(content_type=None, loads=orjson.loads)
            except TimeoutError as exc:
                last = RpcTimeout(f"{what} to {target}: {exc or 'timed out'}")
            except aiohttp.ClientError as exc:
                last = Unavailable(f"{what} to {target}: {exc}")
            except (RateLimited, Unavailable) as exc:
                last = exc
            else:
                try:
                    return read(reply)  # a JSON-RPC error other than a rate limit raises
                except _Retry as exc:
                    last = exc.error
            RPC_ERRORS.labels(last.kind).inc()
            if url is None:
                self._current += 1  # fail over to the next URL
            delay = min(self.max_backoff, self.backoff * 2**attempt)
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
        raise last

    async def block_number(self) -> int:
        return int(await self.call("eth_blockNumber", []), 16)

    async def get_logs(
        self, address: str, start: int, end: int, *, url: str | None = None
    ) -> list[dict[str, Any]]:
        logs = await self.call(
            "eth_getLogs",
            [{"address": address, "fromBlock": hex(start), "toBlock": hex(end)}],
            url=url,
        )
        if not isinstance(logs, list):
            raise RpcError(f"eth_getLogs returned {type(logs).__name__}")
        return logs

    async def logs_of_block(self, address: str, block_hash: str) -> list[dict[str, Any]]:
        """The logs of `address` in one block, asked of every configured URL in turn until one
        returns some (a provider that lost them once may still have them, or another may)."""
        for url in self.urls:
            logs = await self.call(
                "eth_getLogs", [{"address": address, "blockHash": block_hash}], url=url
            )
            if isinstance(logs, list) and logs:
                return logs
        return []

    async def headers(self, start: int, end: int) -> list[dict[str, Any]]:
        """The headers of blocks [start, end], in order (JSON-RPC batches)."""
        numbers = range(start, end + 1)
        found = await self.call_batch("eth_getBlockByNumber", [[hex(n), False] for n in numbers])
        for number, header in zip(numbers, found, strict=True):
            if not isinstance(header, dict):
                raise RpcError(f"no block {number}")
        return found

    async def logs_in_ranges(
        self, address: str, start: int, end: int, ranges: AdaptiveRange, ahead: int = 4
    ) -> list[dict[str, Any]]:
        """Every log of `address` in [start, end], in order, fetched in adaptive spans with up
        to `ahead` spans in flight. A span the provider refuses as too large is fetched again,
        smaller, with every span after it."""
        out: list[dict[str, Any]] = []
        at = start
        while at <= end:
            windows: list[tuple[int, int]] = []
            low = at
            while low <= end and len(windows) < ahead:
                high = min(end, low + ranges.span - 1)
                windows.append((low, high))
                low = high + 1
            results = await asyncio.gather(
                *(self.get_logs(address, a, b) for a, b in windows), return_exceptions=True
            )
            for (low, high), result in zip(windows, results, strict=True):
                if isinstance(result, RangeTooLarge):
                    if high == low:
                        raise result
                    ranges.refused(result.span)
                    break  # this span and the ones after it, again, smaller
                if isinstance(result, BaseException):
                    raise result
                out.extend(result)
                ranges.succeeded()
                at = high + 1
        return out


def bloom_may_contain(bloom_hex: str, item: bytes) -> bool:
    """Whether a block's `logsBloom` may hold `item` (an address or a topic): the three
    11-bit indexes of keccak(item) are set (the yellow paper's M3:2048). False means surely not."""
    bloom = bytes.fromhex(bloom_hex.removeprefix("0x"))
    if len(bloom) != 256:
        return True  # not a bloom we can read: never conclude "no logs" from it
    digest = keccak(item)
    for i in (0, 2, 4):
        bit = ((digest[i] << 8) | digest[i + 1]) & 2047
        if not bloom[255 - bit // 8] & (1 << (bit % 8)):
            return False
    return True
