"""The benchmarks' HTTP client answers what the server sent: it reuses keep-alive connections,
reads chunked bodies, opens a new connection after the server closes one, retries once a
request a kept-alive connection dropped unanswered, waits for a free connection at its limit,
and fails a request whose connection is lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from benchmarks.loadgen import ConnectionClosed, LeanClient


class Server:
    """An HTTP/1.1 server on a free port that counts connections and answers by path."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                path = lines[0].split()[1]
                length = next(
                    (int(h.split(":")[1]) for h in lines if h.lower().startswith("content-length")),
                    0,
                )
                body = await reader.readexactly(length) if length else b""
                served += 1
                if path == "/idle-timeout" and served > 1:
                    break  # as a server closing a kept-alive connection as a request arrives
                if path == "/chunked":
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
                    )
                elif path == "/close":
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbye"
                    )
                    await writer.drain()
                    break
                elif path == "/drop":
                    break
                elif path == "/slow":
                    await asyncio.sleep(0.05)
                    writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                else:
                    answer = b"echo:" + body
                    writer.write(
                        b"HTTP/1.1 201 Created\r\nContent-Length: "
                        + str(len(answer)).encode()
                        + b"\r\n\r\n"
                        + answer
                    )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server()
    listening = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    state.port = listening.sockets[0].getsockname()[1]
    async with listening:
        yield state


async def test_keep_alive_connections_are_reused_and_bodies_read(server: Server) -> None:
    client = LeanClient("127.0.0.1", server.port)
    assert await client.request(LeanClient.post("/x", b'{"a":1}')) == (201, b'echo:{"a":1}')
    assert await client.request(LeanClient.get("/chunked")) == (200, b"hello world")
    assert await client.request(LeanClient.get("/x", {"Authorization": "Bearer t"})) == (
        201,
        b"echo:",
    )
    assert server.connections == 1
    await client.aclose()


async def test_a_connection_the_server_closes_is_replaced(server: Server) -> None:
    client = LeanClient("127.0.0.1", server.port)
    assert await client.request(LeanClient.get("/close")) == (200, b"bye")
    assert await client.request(LeanClient.get("/x")) == (201, b"echo:")
    assert server.connections == 2
    with pytest.raises(ConnectionClosed):
        await client.request(LeanClient.get("/drop"))
    assert await client.request(LeanClient.get("/x")) == (201, b"echo:")
    await client.aclose()


async def test_at_its_limit_a_request_waits_for_a_free_connection(server: Server) -> None:
    client = LeanClient("127.0.0.1", server.port, limit=2)
    answers = await asyncio.gather(*(client.request(LeanClient.get("/slow")) for _ in range(6)))
    assert answers == [(204, b"")] * 6
    assert server.connections == 2
    await client.aclose()


async def test_a_request_a_kept_alive_connection_dropped_unanswered_is_retried_once(
    server: Server,
) -> None:
    client = LeanClient("127.0.0.1", server.port)
    assert await client.request(LeanClient.get("/idle-timeout")) == (201, b"echo:")
    assert await client.request(LeanClient.get("/idle-timeout")) == (201, b"echo:")
    assert server.connections == 2
    await client.aclose()


async def test_requests_rotate_over_every_warmed_connection(server: Server) -> None:
    client = LeanClient("127.0.0.1", server.port)
    await client.warm(4)
    seen = set()
    for _ in range(8):
        await client.request(LeanClient.get("/x"))
        seen.add(id(client._idle[-1]))  # the connection just used goes to the back
    assert len(seen) == 4
    assert server.connections == 4
    await client.aclose()
