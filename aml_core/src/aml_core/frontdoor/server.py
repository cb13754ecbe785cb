"""The front door's own HTTP/1.1 server: ``asyncio.Protocol`` + ``httptools``, no ASGI.

Why not uvicorn: per proxied request, uvicorn's server side (the ASGI scope and message
dicts, a request-response cycle object, the proxy-headers middleware, two writes per
response) cost about as much CPU as the whole rest of the front door. This server parses
requests with ``httptools`` (llhttp, the parser uvicorn uses) straight from
``data_received``, asks :meth:`FrontDoor.head <aml_core.frontdoor.app.FrontDoor.head>` for
a decision as soon as a request's head is complete, and writes each response with one
``transport.write``. The ASGI callable stays for servers that host other apps too (the
emulator serves the front door in-process with uvicorn); both drive the same routing code.

HTTP behaviour:

* keep-alive (HTTP/1.1 by default, HTTP/1.0 with ``Connection: keep-alive``), closed after
  ``keep_alive_timeout`` seconds without a byte from the client while no request of its
  is being answered;
* pipelining: requests on one connection are answered in order, one at a time; reading
  pauses while a later request waits, so at most one read's worth of them is buffered;
* bodies framed by ``Content-Length`` or chunked; ``Expect: 100-continue`` gets
  ``100 Continue`` only once the head is accepted (so a client refused with 401, 404 or
  413 never sends its body);
* a response decided before the body has arrived (401, 404, 413 on ``Content-Length``...)
  is sent at once; the rest of a small body is then read and dropped, and the connection
  kept; for a large, chunked or expected-to-continue body the response says
  ``Connection: close``, the server shuts down its side and drops what still arrives for a
  few seconds (a "lingering close", so the client reads the response instead of a reset);
* a body over the route's limit: 413 as soon as it is known (from ``Content-Length``, or
  while chunks arrive), without reading the rest;
* a request llhttp rejects: 400 (JSON, like every error of the front door) and close;
* a client that goes away mid-request: its request is still answered by the replica (it
  holds the replica's slot until then, as the replica is busy with it), the response is
  dropped;
* :meth:`HttpServer.shutdown` (SIGTERM/SIGINT under :func:`serve`): stop accepting, close
  idle connections, answer the requests in flight (each with ``Connection: close``), then
  close the front door's upstream connections.
"""

from __future__ import annotations

import asyncio
import http
import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from socket import socket
from urllib.parse import unquote

import httptools

from aml_core.frontdoor.app import ADMIN_MAX_BODY_BYTES, FrontDoor, PendingCall, Response, _error

__all__ = ["HttpServer", "serve"]

logger = logging.getLogger("aml_core.frontdoor.server")

#: the rest of a body still to come after an early response is read and dropped, keeping the
#: connection, when at most this large; else the connection is closed
DISCARD_LIMIT = 64 * 1024
#: seconds a closing connection keeps reading (and dropping) what the client still sends
LINGER_S = 5.0
# responses whose body is at least this large go out in two writes instead of being copied
_COPY_LIMIT = 64 * 1024

_STATUS_LINES = {
    s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode("ascii")) for s in http.HTTPStatus
}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_CLOSE = b"connection: close\r\n"
_KEEP_ALIVE = b"connection: keep-alive\r\n"


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 %d Unknown\r\n" % status
    return line


class _Exchange:
    """One request on a connection and what has been decided about it."""

    __slots__ = ("body", "chunked", "complete", "content_length", "continue_expected", "decided", "discard",
                 "headers", "http10", "keep_alive", "method", "path", "preset", "query", "responded",
                 "size")

    def __init__(self) -> None:
        self.method: str | None = None  # set when the head is complete
        self.path = ""
        self.query = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = False
        self.http10 = False
        self.content_length = -1  # -1: none given (chunked, or no body)
        self.chunked = False  # Transfer-Encoding given: the body's length is not known
        self.continue_expected = False
        self.body: list[bytes] = []
        self.size = 0
        self.complete = False  # the whole request (body included) has been parsed
        self.decided: Response | PendingCall | None = None
        self.discard = False  # the rest of the body is dropped
        self.preset: Response | None = None  # answered so, whatever the head says (400, 413)
        self.responded = False


class _HttpProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.frontdoor = server.frontdoor
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.parsing: _Exchange | None = None  # the request whose bytes are arriving
        self.current: _Exchange | None = None  # the request being answered: the oldest
        self.waiting: deque[_Exchange] = deque()  # pipelined behind the current one
        self.task: asyncio.Task | None = None  # answering the current request
        self.last_active = server.now
        self.paused_for: set[str] = set()  # why reading is paused: "pipeline", "writes", ...
        self.unparsed = False  # bytes from the client are no longer parsed (dropped)
        self.closing = False  # the connection closes after the current response
        self.advancing = False  # _done is starting the requests that waited
        self.linger: asyncio.TimerHandle | None = None

    # -------------------------------------------------------------- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        if self.linger is not None:
            self.linger.cancel()
        # a request in flight runs to its end (its replica slot stays counted until the
        # replica answers); its response is dropped
        self.waiting.clear()

    def eof_received(self) -> bool:
        return False  # the client finished: close once what we wrote is sent

    def pause_writing(self) -> None:
        self._pause("writes")

    def resume_writing(self) -> None:
        self._resume("writes")

    def data_received(self, data: bytes) -> None:
        self.last_active = self.server.now
        if self.unparsed:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # no protocol switching here: the request was answered as plain HTTP, with
            # "Connection: close" (on_headers_complete); what follows it is not read
            self.unparsed = True
            self._pause("upgrade")
        except httptools.HttpParserError as exc:
            self._refuse(_error(400, "BadRequest", f"invalid HTTP request: {exc}"))
        except Exception:  # a bug of ours in a parser callback
            logger.exception("the front door failed on a request")
            self._refuse(_error(500, "InternalError", "the front door failed on this request"))

    # -------------------------------------------------------------- httptools callbacks
    # (feed_data parses all it was given: once unparsed is set, the rest is ignored here)
    def on_message_begin(self) -> None:
        if self.unparsed:
            return
        self.url = b""
        self.headers = []
        ex = self.parsing = _Exchange()
        if self.current is None:
            self.current = ex
        else:  # pipelined: read no further until the ones before it are answered
            self.waiting.append(ex)
            self._pause("pipeline")

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        if self.unparsed:
            return
        ex = self.parsing
        parser = self.parser
        url = self.url
        if url[:1] == b"/":
            path, _, query = url.partition(b"?")
            path = path.partition(b"#")[0]
            query = query.partition(b"#")[0]
        else:  # absolute form ("http://host/path") or "*"
            parsed = httptools.parse_url(url)
            path, query = parsed.path or b"/", parsed.query or b""
        try:
            text = path.decode("ascii")
        except UnicodeDecodeError:
            raise httptools.HttpParserError("the request target is not ASCII") from None
        ex.path = unquote(text) if "%" in text else text
        ex.query = query
        ex.method = parser.get_method().decode("ascii")
        ex.keep_alive = parser.should_keep_alive() and not parser.should_upgrade()
        ex.http10 = parser.get_http_version() == "1.0"
        for name, value in self.headers:
            if name == b"content-length":
                ex.content_length = int(value)  # llhttp checked that it is a number
            elif name == b"transfer-encoding":
                ex.chunked = True
            elif name == b"expect" and value.lower() == b"100-continue":
                ex.continue_expected = True
        ex.headers = self.headers
        if ex is self.current:
            self._decide(ex)

    def on_body(self, body: bytes) -> None:
        ex = self.parsing
        if ex is None or ex.discard or self.unparsed:
            return
        ex.size += len(body)
        decided = ex.decided
        if isinstance(decided, PendingCall):
            if ex.size > decided.limit:
                self._drop_body(ex)
                self._respond(ex, decided.too_large(), close=True)
                return
        elif ex.size > self.server.max_body_bytes:  # pipelined, not decided yet
            self._drop_body(ex)
            ex.preset = _error(413, "PayloadTooLarge", f"the request body is larger than "
                                                       f"{self.server.max_body_bytes} bytes")
            return
        ex.body.append(body)

    def on_message_complete(self) -> None:
        ex = self.parsing
        if ex is None or self.unparsed:
            return
        self.parsing = None
        ex.complete = True
        if ex is self.current:
            if ex.responded:
                self._done()
            elif isinstance(ex.decided, PendingCall):
                self._run(ex)

    # -------------------------------------------------------------- answering
    def _decide(self, ex: _Exchange) -> None:
        """``ex`` is the current request and its head is parsed: answer it now, or get ready
        for its body."""
        if ex.preset is not None:
            self._respond(ex, ex.preset, close=True)
            return
        try:
            decided = self.frontdoor.head(ex.method, ex.path, ex.headers)
        except Exception:
            logger.exception("the front door failed on %s %s", ex.method, ex.path)
            decided = _error(500, "InternalError", "the front door failed on this request")
        ex.decided = decided
        if type(decided) is tuple:
            if ex.complete:
                self._respond(ex, decided)
                return
            # answered before the body arrived: drop the rest of it if it is small and its
            # length known, else close (a client that waits for "100 Continue" sends nothing)
            if ex.chunked:
                rest = -1
            else:
                rest = max(ex.content_length, 0) - ex.size
            small = 0 <= rest <= DISCARD_LIMIT and not ex.continue_expected
            self._drop_body(ex)
            self._respond(ex, decided, close=not small)
            return
        if ex.content_length > decided.limit or ex.size > decided.limit:
            self._drop_body(ex)
            self._respond(ex, decided.too_large(), close=not ex.complete)
            return
        if ex.complete:
            self._run(ex)
        elif ex.continue_expected and ex.size == 0 and self.transport is not None:
            self.transport.write(_CONTINUE)

    def _drop_body(self, ex: _Exchange) -> None:
        ex.discard = True
        ex.body = []

    def _run(self, ex: _Exchange) -> None:
        chunks = ex.body
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        ex.body = []
        self.task = self.loop.create_task(self._answer(ex, ex.decided.call(ex.query, body)))

    async def _answer(self, ex: _Exchange, call: Awaitable[Response]) -> None:
        try:
            response = await call
        except Exception:
            logger.exception("the front door failed on %s %s", ex.method, ex.path)
            response = _error(500, "InternalError", "the front door failed on this request")
        self.task = None
        self._respond(ex, response)

    def _respond(self, ex: _Exchange, response: Response, *, close: bool = False) -> None:
        """Write the response to ``ex`` (the current request), then go on to the next one or
        close: ``close`` when the rest of the request is not read."""
        ex.responded = True
        keep = ex.keep_alive and not close and not self.closing and not self.server.stopping
        transport = self.transport
        if transport is not None:
            status, headers, body = response
            parts = [_status_line(status)]
            parts += [b"%s: %s\r\n" % pair for pair in headers]
            parts.append(b"content-length: %d\r\n" % len(body))
            parts.append(self.server.date_line)
            if not keep:
                parts.append(_CLOSE)
            elif ex.http10:
                parts.append(_KEEP_ALIVE)
            parts.append(b"\r\n")
            if ex.method == "HEAD":
                body = b""
            if len(body) < _COPY_LIMIT:
                parts.append(body)
                transport.write(b"".join(parts))
            else:
                transport.write(b"".join(parts))
                transport.write(body)
        self.last_active = self.server.now
        if not keep:
            self._close_after(ex)
        elif ex.complete:
            self._done()

    def _done(self) -> None:
        """The current request is answered: start the ones that waited behind it."""
        self.current = None
        if self.advancing:  # called back from the loop below: it goes on
            return
        self.advancing = True
        try:
            while self.current is None and self.waiting:
                ex = self.current = self.waiting.popleft()
                if not self.waiting:
                    self._resume("pipeline")
                if ex.method is not None or ex.preset is not None:
                    self._decide(ex)  # else on_headers_complete will
        finally:
            self.advancing = False

    def _close_after(self, ex: _Exchange) -> None:
        """No request after ``ex`` is answered; close once the response is sent."""
        self.closing = True
        self.unparsed = True
        transport = self.transport
        unread = not ex.complete or self.parsing is not None or self.waiting
        self.waiting.clear()
        self.current = None
        if transport is None:
            return
        if not unread:
            transport.close()
            return
        # the client may still be sending: shut down our side and drop what arrives for a
        # while, so that it reads the response rather than a connection reset
        self.paused_for.clear()
        transport.resume_reading()
        if transport.can_write_eof():
            transport.write_eof()
        self.linger = self.loop.call_later(LINGER_S, transport.close)

    def _refuse(self, response: Response) -> None:
        """The request being parsed cannot be: answer ``response`` in its turn, then close."""
        self.unparsed = True
        ex = self.parsing
        self.parsing = None
        if ex is None:
            ex = _Exchange()
            if self.current is None:
                self.current = ex
            else:
                self.waiting.append(ex)
        ex.complete = True
        ex.preset = response
        if ex is self.current:
            if ex.responded:  # answered early, then its body turned out malformed
                self._close_after(ex)
            else:
                self._respond(ex, response, close=True)

    # -------------------------------------------------------------- flow control
    def _pause(self, why: str) -> None:
        if not self.paused_for and self.transport is not None:
            self.transport.pause_reading()
        self.paused_for.add(why)

    def _resume(self, why: str) -> None:
        if why in self.paused_for:
            self.paused_for.discard(why)
            if not self.paused_for and self.transport is not None:
                self.transport.resume_reading()

    # -------------------------------------------------------------- server-wide
    def idle_for(self, now: float) -> float:
        """Seconds the client has kept us waiting (0 while a request of its is answered)."""
        if self.task is not None or self.linger is not None:
            return 0.0
        return now - self.last_active

    def shut_down(self) -> None:
        """The server stops: close now if idle, else after the current response."""
        self.closing = True
        if self.transport is not None and self.current is None and self.parsing is None:
            self.transport.close()


class HttpServer:
    """Serves a :class:`FrontDoor` on a listening socket; use it on one event loop.

    :param keep_alive_timeout: an idle client connection is closed after this many seconds.
    :param shutdown_timeout: :meth:`shutdown` waits this long for requests in flight.
    """

    def __init__(self, frontdoor: FrontDoor, *, keep_alive_timeout: float = 30.0,
                 shutdown_timeout: float = 30.0) -> None:
        self.frontdoor = frontdoor
        self.keep_alive_timeout = keep_alive_timeout
        self.shutdown_timeout = shutdown_timeout
        self.connections: set[_HttpProtocol] = set()
        self.stopping = False
        self.now = 0.0
        self.date_line = b""
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._ticker: asyncio.TimerHandle | None = None

    @property
    def max_body_bytes(self) -> int:
        """The most any route takes; a body waiting behind another request may be this large."""
        return max(self.frontdoor.max_body_bytes, ADMIN_MAX_BODY_BYTES)

    async def start(self, sock: socket) -> None:
        """Serve on ``sock`` (bound and listening) from the running loop."""
        self.loop = asyncio.get_running_loop()
        self._tick()
        await self.frontdoor.startup()
        self._server = await self.loop.create_server(lambda: _HttpProtocol(self), sock=sock)

    async def shutdown(self) -> None:
        """Stop accepting, answer the requests in flight (up to ``shutdown_timeout``), close
        every connection, then the front door's connections to its replicas."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.shut_down()
        deadline = self.loop.time() + self.shutdown_timeout
        while self.connections and self.loop.time() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        if self._ticker is not None:
            self._ticker.cancel()
        await self.frontdoor.aclose()

    def _tick(self) -> None:
        """Once a second: the clock and Date header the connections share; idle clients."""
        loop = self.loop
        self.now = now = loop.time()
        self.date_line = b"date: %s\r\n" % formatdate(time.time(), usegmt=True).encode("ascii")
        for conn in list(self.connections):
            if conn.idle_for(now) > self.keep_alive_timeout and conn.transport is not None:
                conn.transport.close()
        self._ticker = loop.call_at(now + 1.0, self._tick)


def serve(frontdoor: FrontDoor, sock: socket, *, on_started: Callable[[], None] | None = None,
          keep_alive_timeout: float = 30.0, shutdown_timeout: float = 30.0) -> None:
    """Serve ``frontdoor`` on ``sock`` with :class:`HttpServer` (on uvloop when installed)
    until SIGTERM or SIGINT (handled when called from the main thread), then shut down
    gracefully and return.

    ``on_started`` runs on a helper thread once the server accepts requests.
    """
    try:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        factory = None

    async def main() -> None:
        server = HttpServer(frontdoor, keep_alive_timeout=keep_alive_timeout,
                            shutdown_timeout=shutdown_timeout)
        await server.start(sock)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
        if on_started is not None:
            threading.Thread(target=on_started, name="frontdoor-started", daemon=True).start()
        try:
            await stop.wait()
        finally:
            await server.shutdown()

    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
