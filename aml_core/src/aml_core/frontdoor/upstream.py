"""A small pooled HTTP/1.1 client for the front door's calls to its replicas.

Why not aiohttp: per proxied request its client did several times the Python work of the
rest of the front door (request and response objects, multidicts, payload writers, stream
readers), and that was most of the front door's cost per request. This client does one
``transport.write`` per request and parses the answer with ``httptools`` (llhttp, the parser
uvicorn uses) straight from ``asyncio.Protocol.data_received``.

What it does:

* a pool of idle keep-alive connections per backend base URL (``http://host:port`` or
  ``https://host:port``), reused most-recently-used first; ``TCP_NODELAY`` on every
  connection;
* responses framed by ``Content-Length``, by ``Transfer-Encoding: chunked`` (the chunks are
  joined) or by the end of the connection; 1xx interim responses are skipped;
* a connection the server closed while it sat idle is dropped from the pool when the close
  arrives; one that turns out closed when reused (the server closed it as the request went
  out, before a single byte of response) is retried once, transparently, on a new
  connection;
* a backend that cannot be reached (refused, unreachable, connect timeout, TLS failure)
  raises :class:`UpstreamConnectError`; a connection that breaks before the response is
  complete raises :class:`UpstreamDisconnected`; a response llhttp cannot parse raises
  :class:`UpstreamProtocolError`. All are :class:`UpstreamError`, so a caller can tell
  "the replica could not be used" from everything else with one ``except``;
* no timeout of its own besides the connect timeout: the caller bounds the whole call (the
  front door wraps it in ``asyncio.timeout``). A cancelled call closes its connection, which
  is never put back in the pool.

It sends exactly the headers it is given plus ``Host`` and ``Content-Length``; the caller
drops hop-by-hop headers. Header names and values must already be valid HTTP (the front
door forwards what uvicorn's parser accepted).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Iterable
from urllib.parse import urlsplit

import httptools

__all__ = [
    "UpstreamClient",
    "UpstreamConnectError",
    "UpstreamDisconnected",
    "UpstreamError",
    "UpstreamProtocolError",
]

# methods for which an empty body is sent without a Content-Length (as aiohttp did)
_NO_LENGTH_IF_EMPTY = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "CONNECT"})
# parsed backend base URLs kept at most
_MAX_ORIGINS = 1024
# bodies at least this large are written after the head instead of being copied into it
_COPY_LIMIT = 64 * 1024


class UpstreamError(Exception):
    """The backend could not be used for this request (see the subclasses)."""


class UpstreamConnectError(UpstreamError):
    """No connection could be made to the backend (refused, unreachable, timed out, TLS)."""


class UpstreamDisconnected(UpstreamError):
    """The connection closed or broke before the response was complete.

    ``received`` says whether any byte of the response had arrived.
    """

    def __init__(self, message: str, *, received: bool) -> None:
        super().__init__(message)
        self.received = received


class UpstreamProtocolError(UpstreamError):
    """The backend's answer was not valid HTTP/1.1."""


class _Origin:
    __slots__ = ("host", "host_header", "host_line", "port", "server_hostname", "ssl")

    def __init__(self, base: str) -> None:
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not a backend base URL: {base!r}")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"a backend base URL has no path or query: {base!r}")
        secure = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if secure else 80)
        self.ssl: ssl.SSLContext | None = ssl.create_default_context() if secure else None
        self.server_hostname = self.host if secure else None
        # the Host header as aiohttp sends it: the port only when it is not the default
        name = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = (
            name if parts.port in (None, 443 if secure else 80) else f"{name}:{self.port}"
        )
        self.host_line = f"host: {self.host_header}\r\n".encode("latin-1")


class _Connection(asyncio.Protocol):
    """One keep-alive connection; carries one request at a time."""

    def __init__(self, client: UpstreamClient, key: str) -> None:
        self.client = client
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reused = False  # taken from the idle pool at least once
        self.idle_since = 0.0
        self.waiter: asyncio.Future | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.received = False  # a byte of the current response arrived
        self.head_done = False
        self.head_only = False  # the request was HEAD: no body follows the head
        self.keep_alive = True
        self.until_eof = False  # the body ends when the connection does

    # -------------------------------------------------------------- the request
    def start(self, data: bytes, body: bytes, head_only: bool) -> asyncio.Future:
        waiter = self.client.loop.create_future()
        self.waiter = waiter
        self.headers = []
        self.body = []
        self.received = False
        self.head_done = False
        self.head_only = head_only
        self.keep_alive = True
        self.until_eof = False
        transport = self.transport
        assert transport is not None
        transport.write(data)
        if body:
            transport.write(body)
        return waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _finish(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            body = self.body
            waiter.set_result(
                (
                    self.parser.get_status_code(),
                    self.headers,
                    body[0] if len(body) == 1 else b"".join(body),
                )
            )

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    # -------------------------------------------------------------- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.client._all.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (OSError, AttributeError):  # not TCP (tests may use a Unix socket)
                pass

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # bytes nobody asked for: the connection cannot be trusted
            self.close()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail(UpstreamProtocolError(f"invalid response from {self.key}: {exc}"))
            self.close()

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.client._forget(self)
        if self.waiter is None:
            return
        if self.head_done and self.until_eof:
            self.keep_alive = False
            self._finish()
            return
        why = f"the connection to {self.key} closed before the response was complete"
        if exc is not None:
            why += f" ({exc})"
        self._fail(UpstreamDisconnected(why, received=self.received))

    # -------------------------------------------------------------- httptools callbacks
    def on_message_begin(self) -> None:
        if self.waiter is None:
            # more bytes after the complete response, in the same segment: never reuse this
            self.close()
        self.headers = []
        self.body = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        status = parser.get_status_code()
        if 100 <= status < 200:
            return  # interim response; on_message_complete skips it
        self.head_done = True
        self.keep_alive = parser.should_keep_alive()
        if self.head_only:
            # llhttp does not know the request was HEAD and would wait for a body
            self.keep_alive = False
            self._finish()
            self.close()
            return
        if not self.keep_alive and status not in (204, 304):
            self.until_eof = not any(
                name.lower() in (b"content-length", b"transfer-encoding")
                for name, _ in self.headers
            )

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if not self.head_done:
            return  # the end of a 1xx interim response
        self._finish()


class UpstreamClient:
    """Pooled keep-alive HTTP/1.1 client; use it on one event loop only.

    :param connect_timeout: seconds for a new connection (TCP and TLS handshake).
    :param idle_timeout: an idle connection older than this is closed instead of reused.
    :param max_idle_per_backend: idle connections kept per backend; more are closed.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = 5.0,
        idle_timeout: float = 30.0,
        max_idle_per_backend: int = 256,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.max_idle_per_backend = max_idle_per_backend
        self.loop = asyncio.get_running_loop()
        self._origins: dict[str, _Origin] = {}
        self._idle: dict[str, list[_Connection]] = {}
        self._all: set[_Connection] = set()
        self._closed = False

    def __repr__(self) -> str:
        idle = sum(len(stack) for stack in self._idle.values())
        return f"UpstreamClient(open={len(self._all)}, idle={idle})"

    @property
    def idle_connections(self) -> int:
        return sum(len(stack) for stack in self._idle.values())

    @property
    def open_connections(self) -> int:
        return len(self._all)

    async def request(
        self,
        base: str,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        *,
        raw_headers: bytes = b"",
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Send ``method target`` to the backend at ``base`` (``http://host:port``).

        ``headers`` are latin-1 text pairs, sent as given; ``raw_headers`` are more header
        lines already serialized (``b"name: value\\r\\n"`` each), sent after them. Returns
        ``(status, headers as received (bytes pairs), body)``; raises :class:`UpstreamError`
        if the backend could not be used.
        """
        if self._closed:
            raise UpstreamConnectError("the upstream client is closed")
        origin = self._origins.get(base)
        if origin is None:
            if len(self._origins) >= _MAX_ORIGINS:  # replicas come and go (new pod addresses)
                self._origins.clear()
            origin = self._origins[base] = _Origin(base)
        parts = [f"{method} {target} HTTP/1.1\r\n".encode("latin-1"), origin.host_line]
        if headers:
            parts.append("".join([f"{name}: {value}\r\n" for name, value in headers]).encode("latin-1"))
        parts.append(raw_headers)
        if body or method not in _NO_LENGTH_IF_EMPTY:
            parts.append(b"content-length: %d\r\n\r\n" % len(body))
        else:
            parts.append(b"\r\n")
        if len(body) < _COPY_LIMIT:
            parts.append(body)
            body = b""
        head = b"".join(parts)
        head_only = method == "HEAD"
        conn = self._take_idle(base)
        if conn is not None:
            try:
                return await self._exchange(conn, head, body, head_only)
            except UpstreamDisconnected as exc:
                if exc.received:
                    raise
                # the server closed the idle connection as the request went out: nothing of
                # the response arrived, so the request is sent again on a new connection
        conn = await self._connect(base, origin)
        return await self._exchange(conn, head, body, head_only)

    async def aclose(self) -> None:
        """Close every connection; requests in flight fail with :class:`UpstreamDisconnected`."""
        self._closed = True
        conns = list(self._all)
        self._idle.clear()
        for conn in conns:
            conn.close()
        if conns:
            await asyncio.sleep(0)  # let the transports call connection_lost

    # ------------------------------------------------------------------ internals
    async def _exchange(
        self, conn: _Connection, head: bytes, body: bytes, head_only: bool
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        try:
            result = await conn.start(head, body, head_only)
        except BaseException:
            conn.waiter = None
            conn.close()  # cancelled or broken half-way: never reuse it
            raise
        if conn.keep_alive and not conn.closed and not self._closed:
            stack = self._idle.get(conn.key)
            if stack is None:
                stack = self._idle[conn.key] = []
            if len(stack) < self.max_idle_per_backend:
                conn.idle_since = time.monotonic()
                stack.append(conn)
            else:
                conn.close()
        else:
            conn.close()
        return result

    def _take_idle(self, key: str) -> _Connection | None:
        stack = self._idle.get(key)
        if not stack:
            return None
        now = time.monotonic()
        while stack:
            conn = stack.pop()
            if conn.closed or conn.transport.is_closing():
                continue
            if now - conn.idle_since > self.idle_timeout:
                conn.close()
                continue
            conn.reused = True
            return conn
        return None

    async def _connect(self, key: str, origin: _Origin) -> _Connection:
        loop = self.loop
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self, key),
                    origin.host,
                    origin.port,
                    ssl=origin.ssl,
                    server_hostname=origin.server_hostname,
                )
        except TimeoutError:
            raise UpstreamConnectError(
                f"connecting to {key} took longer than {self.connect_timeout:g} s"
            ) from None
        except OSError as exc:  # refused, unreachable, name not found, TLS handshake
            raise UpstreamConnectError(f"cannot connect to {key}: {exc}") from exc
        if self._closed:
            conn.close()
            raise UpstreamConnectError("the upstream client is closed")
        return conn

    def _forget(self, conn: _Connection) -> None:
        """``conn`` closed: drop it from the bookkeeping (and the idle pool, if it was there)."""
        self._all.discard(conn)
        if conn.waiter is None:
            stack = self._idle.get(conn.key)
            if stack is not None:
                try:
                    stack.remove(conn)
                except ValueError:
                    pass
                if not stack:
                    del self._idle[conn.key]
