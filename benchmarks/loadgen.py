"""A lean HTTP/1.1 client for the open-loop benchmarks: keep-alive connections on the running
(uv)loop, responses parsed by httptools (the C parser uvicorn itself uses), requests given as
ready-made bytes.

Why not aiohttp: on the 2-core machine the generator shares the cores with the stack it
measures, and aiohttp spent about 0.85 ms of CPU per request (measured from /proc beside
`GET /users/me`), more than half of what the API spent answering it. This client spends a
small fraction of that, so the figures are the stack's, not the generator's.

It does only what the benchmarks need: one host, GET and POST, `Content-Length` or chunked
responses (httptools handles both), no TLS, no redirects, no cookies.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import cast

import httptools


class ConnectionClosed(ConnectionError):
    """The server closed a connection before answering the request sent on it."""

    unanswered_reuse = False  # on a reused connection, before any byte of an answer


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.body: list[bytes] = []
        self.open = True
        self.served = 0  # requests answered on this connection
        self.received = False  # any byte of the current answer

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        lost = ConnectionClosed(f"connection lost: {exc}" if exc else "closed by the server")
        lost.__cause__ = exc
        self._fail(lost)

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        body, self.body = b"".join(self.body), []
        if not self.parser.should_keep_alive():
            self.open = False
            if self.transport is not None:
                self.transport.close()
        if waiter is not None and not waiter.done():
            waiter.set_result((self.parser.get_status_code(), body))

    def _fail(self, exc: BaseException) -> None:
        self.open = False
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class LeanClient:
    """Keep-alive connections to one `host:port`, at most `limit` open; a request waits for
    an idle connection when all are busy (that wait counts in the caller's latency)."""

    def __init__(self, host: str, port: int, limit: int = 512) -> None:
        self.host = host
        self.port = port
        self.limit = limit
        # Idle connections, taken oldest first: requests rotate over every open connection,
        # as many clients' would, instead of piling onto the few most recently used (which
        # can all belong to one of the server's worker processes).
        self._idle: deque[_Connection] = deque()
        self._open = 0
        # Requests waiting for a connection: each gets an idle one, or None (open a new one).
        self._waiting: deque[asyncio.Future[_Connection | None]] = deque()

    @staticmethod
    def get(path: str, headers: dict[str, str] | None = None) -> bytes:
        """The bytes of `GET path` with `headers`."""
        return _request(b"GET", path, headers or {}, b"")

    @staticmethod
    def post(path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
        """The bytes of `POST path` with a JSON `body` and `headers`."""
        return _request(
            b"POST", path, {"Content-Type": "application/json", **(headers or {})}, body
        )

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send the request `raw` and return the response's status and body. A kept-alive
        connection the server closed before answering a byte (its idle timeout, at the moment
        the request went out) is retried once on another: the server never read it."""
        try:
            return await self._exchange(raw)
        except ConnectionClosed as closed:
            if not closed.unanswered_reuse:
                raise
            return await self._exchange(raw)

    async def _exchange(self, raw: bytes) -> tuple[int, bytes]:
        conn = await self._connection()
        reused, conn.received = conn.served > 0, False
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[tuple[int, bytes]] = loop.create_future()
        conn.waiter = waiter
        assert conn.transport is not None
        conn.transport.write(raw)
        try:
            answer = await waiter
            conn.served += 1
            return answer
        except ConnectionClosed as closed:
            closed.unanswered_reuse = reused and not conn.received
            raise
        finally:
            self._release(conn)

    async def _connection(self) -> _Connection:
        while True:
            while self._idle:
                conn = self._idle.popleft()
                if conn.open:
                    return conn
                self._open -= 1
            if self._open < self.limit:
                self._open += 1
                loop = asyncio.get_running_loop()
                try:
                    _, conn = await loop.create_connection(_Connection, self.host, self.port)
                except BaseException:
                    self._open -= 1
                    self._hand_over(None)
                    raise
                return conn
            turn: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
            self._waiting.append(turn)
            given = await turn
            if given is not None:
                return given

    def _release(self, conn: _Connection) -> None:
        if not conn.open:
            self._open -= 1
        self._hand_over(conn if conn.open else None)

    def _hand_over(self, conn: _Connection | None) -> None:
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(conn)
                return
        if conn is not None:
            self._idle.append(conn)

    async def warm(self, connections: int) -> None:
        """Open `connections` connections now (at most `limit`), as that many clients would
        have: the server spreads them over its worker processes as it accepts them."""
        loop = asyncio.get_running_loop()
        wanted = min(connections, self.limit) - self._open
        if wanted <= 0:
            return
        self._open += wanted
        opened = await asyncio.gather(
            *(loop.create_connection(_Connection, self.host, self.port) for _ in range(wanted)),
            return_exceptions=True,
        )
        for made in opened:
            if isinstance(made, BaseException):
                self._open -= 1
            else:
                self._idle.append(made[1])

    async def aclose(self) -> None:
        for conn in self._idle:
            if conn.transport is not None:
                conn.transport.close()
        self._idle.clear()


def _request(method: bytes, path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [method + b" " + path.encode() + b" HTTP/1.1", b"Host: bench"]
    lines += [f"{name}: {value}".encode() for name, value in headers.items()]
    if body or method == b"POST":
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
