"""The front door's upstream client against real loopback servers (asyncio streams, raw HTTP)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Self

import pytest
from aml_core.frontdoor.upstream import (
    UpstreamClient,
    UpstreamConnectError,
    UpstreamDisconnected,
    UpstreamError,
    UpstreamProtocolError,
)
from frontdoor_testkit import plain

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "RawServer"], Awaitable[None]]


class Request:
    def __init__(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """One request (Content-Length bodies only), or ``None`` at end of stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:] if line]
    request = Request(method, target, headers, b"")  # type: ignore[arg-type]
    length = int(request.header("content-length") or 0)
    request.body = await reader.readexactly(length) if length else b""
    return request


def response(body: bytes = b"ok", status: int = 200, extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status} X\r\ncontent-length: {len(body)}\r\n{extra}\r\n").encode() + body


class RawServer:
    """A TCP server on 127.0.0.1 running ``handler`` per connection; it records requests."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[Request] = []
        self.closed = asyncio.Event()  # set each time a connection's handler ends
        self.server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> Self:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer, self)
        except ConnectionError:
            pass
        finally:
            writer.close()
            self.closed.set()

    async def next_request(self, reader: asyncio.StreamReader) -> Request | None:
        request = await read_request(reader)
        if request is not None:
            self.requests.append(request)
        return request


async def keep_alive_echo(reader, writer, server: RawServer) -> None:
    """Answer every request on the connection with its body (or its target if empty)."""
    while (request := await server.next_request(reader)) is not None:
        writer.write(response(request.body or request.target.encode()))
        await writer.drain()


def run(coro) -> None:
    """Run a test's coroutine; a hang fails the test instead of the whole run."""
    asyncio.run(asyncio.wait_for(coro, 60))


def test_keep_alive_connections_are_reused():
    async def main():
        async with RawServer(keep_alive_echo) as server:
            client = UpstreamClient()
            for i in range(5):
                status, headers, body = await client.request(
                    server.url,
                    "POST",
                    f"/score?i={i}",
                    [("content-type", "text/plain")],
                    b"x%d" % i,
                )
                assert (status, body) == (200, b"x%d" % i)
                assert (b"content-length", b"2") in headers
            assert server.connections == 1
            assert client.idle_connections == 1
            # concurrent requests need as many connections, and those are kept for the next burst
            for _ in range(2):
                results = await asyncio.gather(
                    *(client.request(server.url, "GET", f"/{n}") for n in range(4))
                )
                assert [body for _, _, body in results] == [b"/0", b"/1", b"/2", b"/3"]
            assert server.connections == 4
            await client.aclose()
            assert client.open_connections == 0

    run(main())


def test_request_head_carries_host_length_and_the_given_headers_only():
    async def main():
        async with RawServer(keep_alive_echo) as server:
            client = UpstreamClient()
            await client.request(server.url, "POST", "/score", [("x-ms-request-id", "r1")], b"{}")
            await client.request(server.url, "POST", "/score", [], b"")
            await client.request(server.url, "GET", "/swagger.json?version=2", [("accept", "*/*")])
            await client.aclose()
        port = server.url.rsplit(":", 1)[1]
        post, empty_post, get = server.requests
        assert post.headers == [
            ("host", f"127.0.0.1:{port}"),
            ("x-ms-request-id", "r1"),
            ("content-length", "2"),
        ]
        assert post.body == b"{}"
        assert empty_post.header("content-length") == "0"
        assert get.target == "/swagger.json?version=2"
        assert get.headers == [("host", f"127.0.0.1:{port}"), ("accept", "*/*")]

    run(main())


def test_chunked_and_fragmented_responses_are_reassembled():
    async def handler(reader, writer, server):
        while await server.next_request(reader) is not None:
            # the head and the chunks arrive in separate segments, split mid-line
            for part in (
                b"HTTP/1.1 200 OK\r\ncontent-type: text/pl",
                b"ain\r\ntransfer-encoding: ch",
                b"unked\r\n\r\n5\r\nhel",
                b"lo\r\n",
                b"6\r\n world\r\n0\r\n",
                b"\r\n",
            ):
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(0.001)

    async def main():
        async with RawServer(handler) as server:
            client = UpstreamClient()
            for _ in range(2):
                status, headers, body = await client.request(server.url, "GET", "/")
                assert (status, body) == (200, b"hello world")
                assert (b"content-type", b"text/plain") in headers
                assert (b"transfer-encoding", b"chunked") in headers
            assert server.connections == 1  # the chunked answer ended cleanly: kept alive
            await client.aclose()

    run(main())


def test_a_response_that_ends_with_the_connection():
    async def handler(reader, writer, server):
        await server.next_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil ")
        await writer.drain()
        writer.write(b"the end")
        await writer.drain()

    async def main():
        async with RawServer(handler) as server:
            client = UpstreamClient()
            for _ in range(2):
                status, _, body = await client.request(server.url, "GET", "/")
                assert (status, body) == (200, b"until the end")
            assert server.connections == 2
            assert client.idle_connections == 0
            await client.aclose()

    run(main())


def test_interim_responses_are_skipped_and_head_has_no_body():
    async def handler(reader, writer, server):
        while (request := await server.next_request(reader)) is not None:
            if request.method == "HEAD":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n" + response(b"final"))
            await writer.drain()

    async def main():
        async with RawServer(handler) as server:
            client = UpstreamClient()
            status, headers, body = await client.request(server.url, "POST", "/", [], b"1")
            assert (status, body) == (200, b"final")
            assert not any(name == b"link" for name, _ in headers)
            status, headers, body = await client.request(server.url, "HEAD", "/")
            assert (status, body) == (200, b"")
            assert (b"content-length", b"11") in headers
            status, _, body = await client.request(server.url, "GET", "/")
            assert (status, body) == (200, b"final")
            await client.aclose()

    run(main())


def test_bytes_after_a_complete_response_make_the_connection_unusable():
    async def handler(reader, writer, server):
        while await server.next_request(reader) is not None:
            writer.write(response(b"one") + b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nextra")
            await writer.drain()

    async def main():
        async with RawServer(handler) as server:
            client = UpstreamClient()
            for _ in range(2):
                assert (await client.request(server.url, "GET", "/"))[2] == b"one"
            assert server.connections == 2
            await client.aclose()

    run(main())


def test_an_idle_connection_the_server_closed_is_replaced():
    async def handler(reader, writer, server):
        await server.next_request(reader)
        writer.write(response(b"once"))  # keep-alive by the protocol, then closed anyway
        await writer.drain()

    async def main():
        async with RawServer(handler) as server:
            client = UpstreamClient()
            assert (await client.request(server.url, "GET", "/"))[2] == b"once"
            await server.closed.wait()
            while client.open_connections:  # the close reaches the client's idle connection
                await asyncio.sleep(0.01)
            assert client.idle_connections == 0
            assert (await client.request(server.url, "GET", "/"))[2] == b"once"
            assert server.connections == 2
            await client.aclose()

    run(main())


def test_a_reused_connection_closed_before_any_answer_is_retried_on_a_new_one():
    async def handler(reader, writer, server):
        # answers the first request on each connection; a second one gets the connection
        # closed without a byte, as when the server's keep-alive timeout races the request
        await server.next_request(reader)
        writer.write(response(b"fresh"))
        await writer.drain()
        await server.next_request(reader)

    async def main():
        async with RawServer(handler) as server:
            client = UpstreamClient()
            for _ in range(3):
                status, _, body = await client.request(server.url, "POST", "/score", [], b"{}")
                assert (status, body) == (200, b"fresh")
            assert server.connections == 3
            assert len(server.requests) == 5  # 3 answered, 2 sent on connections that then closed
            await client.aclose()

    run(main())


def test_a_broken_response_on_a_reused_connection_is_not_retried():
    async def handler(reader, writer, server):
        await server.next_request(reader)
        writer.write(response(b"fresh"))
        await writer.drain()
        await server.next_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await writer.drain()

    async def main():
        async with RawServer(handler) as server:
            client = UpstreamClient()
            await client.request(server.url, "GET", "/")
            with pytest.raises(UpstreamDisconnected) as info:
                await client.request(server.url, "POST", "/score", [], b"{}")
            assert info.value.received
            assert server.connections == 1 and len(server.requests) == 2
            await client.aclose()

    run(main())


def test_a_new_connection_closed_without_an_answer_raises():
    async def handler(reader, writer, server):
        await server.next_request(reader)

    async def main():
        async with RawServer(handler) as server:
            client = UpstreamClient()
            with pytest.raises(UpstreamDisconnected) as info:
                await client.request(server.url, "POST", "/score", [], b"{}")
            assert not info.value.received
            assert server.connections == 1  # not retried: a new connection is not stale
            await client.aclose()

    run(main())


def test_a_reset_connection_raises_an_upstream_error():
    async def handler(reader, writer, server):
        await server.next_request(reader)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.transport.abort()  # RST

    async def main():
        async with RawServer(handler) as server:
            client = UpstreamClient()
            with pytest.raises(UpstreamDisconnected):
                await client.request(server.url, "POST", "/score", [], b"{}")
            await client.aclose()

    run(main())


def test_connection_refused_raises_a_connect_error(dead_url):
    async def main():
        client = UpstreamClient()
        with pytest.raises(UpstreamConnectError) as info:
            await client.request(dead_url, "GET", "/")
        assert dead_url in str(info.value)
        assert isinstance(info.value, UpstreamError)
        await client.aclose()

    run(main())


def test_an_invalid_response_raises_a_protocol_error():
    async def handler(reader, writer, server):
        await server.next_request(reader)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        await reader.read()

    async def main():
        async with RawServer(handler) as server:
            client = UpstreamClient()
            with pytest.raises(UpstreamProtocolError):
                await client.request(server.url, "GET", "/")
            assert client.idle_connections == 0
            await client.aclose()

    run(main())


def test_big_bodies_both_ways():
    big = bytes(range(256)) * (20 * 4096)  # 20 MiB

    async def chunked_echo(reader, writer, server):
        while (request := await server.next_request(reader)) is not None:
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            view = memoryview(request.body)
            for start in range(0, len(view), 1 << 20):
                piece = view[start : start + (1 << 20)]
                writer.write(b"%x\r\n" % len(piece) + bytes(piece) + b"\r\n")
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    async def main():
        for handler in (keep_alive_echo, chunked_echo):
            async with RawServer(handler) as server:
                client = UpstreamClient()
                for body in (big, b"small"):
                    status, _, answer = await client.request(server.url, "POST", "/score", [], body)
                    assert status == 200 and answer == body
                assert server.connections == 1
                await client.aclose()

    run(main())


def test_a_cancelled_request_closes_its_connection():
    async def handler(reader, writer, server):
        while (request := await server.next_request(reader)) is not None:
            if request.target == "/hang":
                await reader.read()  # until the client closes
                return
            writer.write(response())
            await writer.drain()

    async def main():
        async with RawServer(handler) as server:
            client = UpstreamClient()
            await client.request(server.url, "GET", "/")
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await client.request(server.url, "GET", "/hang")
            await server.closed.wait()  # the client closed the connection it gave up on
            assert (await client.request(server.url, "GET", "/"))[0] == 200
            assert server.connections == 2
            await client.aclose()

    run(main())


def test_aclose_closes_idle_connections():
    async def main():
        async with RawServer(keep_alive_echo) as server:
            client = UpstreamClient()
            await client.request(server.url, "GET", "/")
            await client.aclose()
            await server.closed.wait()
            assert client.open_connections == 0
            with pytest.raises(UpstreamError):
                await client.request(server.url, "GET", "/")

    run(main())


# ---------------------------------------------------------------------- through the front door
class DroppingReplica:
    """A loopback server, in a thread, that reads a request and resets the connection."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.dropped = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                self.dropped += 1

    def close(self) -> None:
        self.sock.close()


def test_a_replica_that_drops_the_connection_is_retried_on_another_else_502(frontdoor, backends):
    dropping = DroppingReplica()
    try:
        _, good = backends("good")
        frontdoor.put_ok(
            "svc", plain("svc", [dropping.url, good], max_concurrent_requests_per_replica=4)
        )
        for _ in range(4):
            resp = frontdoor.score("svc", data=b"{}")
            assert resp.status_code == 200 and resp.json()["backend"] == "good"
        frontdoor.put_ok("solo", plain("solo", [dropping.url]))
        resp = frontdoor.score("solo", data=b"{}")
        assert resp.status_code == 502 and resp.json()["error"]["code"] == "BadGateway"
        assert dropping.dropped >= 1
        assert frontdoor.metrics()["services"]["solo"]["versions"]["solo"]["busy"] == 0
    finally:
        dropping.close()
