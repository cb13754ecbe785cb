"""The front door's own HTTP/1.1 server (``aml_core.frontdoor.server``), on raw sockets: what
``requests`` never sends (pipelining, chunked bodies, ``Expect: 100-continue``, malformed
requests) and how connections end."""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time

import pytest
from aml_core.frontdoor import FrontDoor
from frontdoor_testkit import FrontDoorHarness, ServedNative, plain

KEY = "k-" + "x" * 20


@pytest.fixture
def native():
    """``make(**server options) -> FrontDoorHarness`` on the native server, max body 1000 bytes."""
    started: list[tuple[FrontDoorHarness, ServedNative]] = []

    def make(**options) -> FrontDoorHarness:
        token = secrets.token_urlsafe(16)
        app = FrontDoor(token, max_body_bytes=1000)
        served = ServedNative(app, **options).start()
        harness = FrontDoorHarness(app, served, token)
        started.append((harness, served))
        return harness

    yield make
    for harness, served in started:
        harness.http.close()
        served.stop()


def keyed(backends: list[str], **extra) -> dict:
    return plain("svc", backends, auth="key", keys={"primary": KEY, "secondary": KEY + "2"}, **extra)


class Client:
    """One raw connection; reads responses framed by Content-Length."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buf += chunk
        return bool(chunk)

    def head(self) -> tuple[int, dict[str, str]]:
        while b"\r\n\r\n" not in self.buf:
            assert self._fill(), f"closed before a response head: {self.buf!r}"
        raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    def response(self) -> tuple[int, dict[str, str], bytes]:
        status, headers = self.head()
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            assert self._fill(), "closed in the middle of a body"
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body

    def closed(self) -> bool:
        """The server closed the connection (after anything still buffered)."""
        self.sock.settimeout(5)
        try:
            while self._fill():
                pass
        except ConnectionResetError:
            pass
        return True

    def close(self) -> None:
        self.sock.close()


def score_request(body: bytes, *, key: str = KEY, extra: str = "") -> bytes:
    return (f"POST /api/v1/service/svc/score HTTP/1.1\r\nHost: fd\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def test_keep_alive_and_pipelined_requests_are_answered_in_order(native, backends):
    fd = native()
    _, url = backends("b")
    fd.put_ok("svc", keyed([url]))
    client = Client(fd.url)
    client.send(score_request(b'{"n": 1}') + b"GET / HTTP/1.1\r\nHost: fd\r\n\r\n"
                + score_request(b'{"n": 2}') + b"GET /nope HTTP/1.1\r\nHost: fd\r\n\r\n")
    first, health, second, missing = (client.response() for _ in range(4))
    assert first[0] == 200 and json.loads(first[2])["body"] == '{"n": 1}'
    assert first[1]["x-ms-version"] == "svc" and "connection" not in first[1] and "date" in first[1]
    assert health[0] == 200 and json.loads(health[2]) == {"status": "Healthy"}
    assert second[0] == 200 and json.loads(second[2])["body"] == '{"n": 2}'
    assert missing[0] == 404 and json.loads(missing[2])["error"]["code"] == "NotFound"
    client.send(score_request(b'{"n": 3}'))  # the same connection goes on
    assert client.response()[0] == 200
    client.close()


def test_a_chunked_body_reaches_the_replica_whole_and_without_transfer_encoding(native, backends):
    fd = native()
    backend, url = backends("b")
    fd.put_ok("svc", keyed([url]))
    client = Client(fd.url)
    client.send(f"POST /api/v1/service/svc/score?a=1 HTTP/1.1\r\nHost: fd\r\nAuthorization: Bearer {KEY}\r\n"
                "Transfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n3\r\n 1}\r\n0\r\n\r\n".encode())
    status, _, body = client.response()
    assert status == 200
    assert json.loads(body)["body"] == '{"a": 1}' and json.loads(body)["query"] == "a=1"
    assert backend.seen_auth == [None]  # the key is never forwarded
    client.close()


def test_expect_100_continue_only_once_the_request_is_accepted(native, backends):
    fd = native()
    _, url = backends("b")
    fd.put_ok("svc", keyed([url]))
    client = Client(fd.url)
    client.send(score_request(b"", extra="Expect: 100-continue\r\n").replace(b"Content-Length: 0",
                                                                             b"Content-Length: 7"))
    assert client.head()[0] == 100
    client.send(b'{"x":1}')
    status, _, body = client.response()
    assert status == 200 and json.loads(body)["body"] == '{"x":1}'
    # refused at its head: the final answer at once, no 100, and the body is not awaited
    client.send(score_request(b"", key="wrong", extra="Expect: 100-continue\r\n").replace(
        b"Content-Length: 0", b"Content-Length: 7"))
    status, headers, body = client.response()
    assert status == 401 and headers["connection"] == "close"
    assert json.loads(body)["error"]["code"] == "Unauthorized"
    assert client.closed()
    client.close()


def test_a_refused_request_with_a_small_body_keeps_the_connection(native, backends):
    fd = native()
    backend, url = backends("b")
    fd.put_ok("svc", keyed([url]))
    client = Client(fd.url)
    client.send(score_request(b'{"a": 1}', key="wrong"))
    status, headers, _ = client.response()
    assert status == 401 and headers["www-authenticate"] == "Bearer" and "connection" not in headers
    client.send(score_request(b'{"a": 2}'))
    assert client.response()[0] == 200
    assert backend.calls == 1
    client.close()


@pytest.mark.parametrize("request_bytes", [
    b"NOT HTTP AT ALL\r\n\r\n",
    b"POST /api/v1/service/svc/score HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    b"GET / HTTP/1.1\r\nBad Header Line\r\n\r\n",
    (b"PUT /-/services/svc HTTP/1.1\r\nAuthorization: Bearer {token}\r\n"
     b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"),
])
def test_a_malformed_request_gets_400_and_the_connection_closes(native, request_bytes):
    fd = native()
    client = Client(fd.url)
    client.send(request_bytes.replace(b"{token}", fd.token.encode()))
    status, headers, body = client.response()
    assert status == 400 and headers["connection"] == "close"
    assert json.loads(body)["error"]["code"] == "BadRequest"
    assert client.closed()
    client.close()


def test_a_body_over_the_limit_gets_413_without_being_read(native, backends):
    fd = native()
    backend, url = backends("b")
    fd.put_ok("svc", keyed([url]))
    # announced: the answer comes before a byte of the body is sent
    client = Client(fd.url)
    client.send(score_request(b"").replace(b"Content-Length: 0", b"Content-Length: 50000000"))
    status, headers, body = client.response()
    assert status == 413 and headers["connection"] == "close"
    assert json.loads(body)["error"] == {"code": "PayloadTooLarge",
                                         "message": "the request body is larger than 1000 bytes"}
    client.close()
    # chunked: once the chunks add up to more than the limit
    client = Client(fd.url)
    client.send(f"POST /api/v1/service/svc/score HTTP/1.1\r\nHost: fd\r\nAuthorization: Bearer {KEY}\r\n"
                "Transfer-Encoding: chunked\r\n\r\n".encode())
    for _ in range(3):
        client.send(b"200\r\n" + b"x" * 0x200 + b"\r\n")
    assert client.response()[0] == 413
    client.close()
    assert backend.calls == 0


def test_a_pipelined_request_over_the_limit_ends_the_connection_after_the_ones_before(native, backends):
    fd = native()
    backend, url = backends("b")
    fd.put_ok("svc", keyed([url]))
    client = Client(fd.url)
    client.send(score_request(b'{"n": 1}')
                + score_request(b"").replace(b"Content-Length: 0", b"Content-Length: 50000000")
                + score_request(b'{"n": 3}'))
    first, refused = client.response(), client.response()
    assert first[0] == 200 and json.loads(first[2])["body"] == '{"n": 1}'
    assert refused[0] == 413 and refused[1]["connection"] == "close"
    assert client.closed()  # what followed the refused body is never taken for a request
    assert backend.calls == 1
    client.close()


def test_an_upgrade_request_is_answered_as_plain_http_and_the_connection_closes(native, backends):
    fd = native()
    backend, url = backends("b")
    fd.put_ok("svc", keyed([url]))
    client = Client(fd.url)
    client.send(f"GET /api/v1/service/svc/score HTTP/1.1\r\nHost: fd\r\nAuthorization: Bearer {KEY}\r\n"
                "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n".encode() + b"\x81\x05hello")
    status, headers, _ = client.response()
    assert status == 200 and headers["connection"] == "close"
    assert client.closed()  # the bytes after the head are not parsed as HTTP
    assert backend.calls == 1
    client.close()


def test_a_client_that_goes_away_mid_request_frees_the_replica_when_it_answers(native, backends):
    fd = native()
    backend, url = backends("b", delay=0.3)
    fd.put_ok("svc", keyed([url], max_concurrent_requests_per_replica=1))
    client = Client(fd.url)
    client.send(score_request(b"{}"))
    time.sleep(0.1)
    client.close()
    deadline = time.monotonic() + 5
    while fd.metrics()["services"]["svc"]["versions"]["svc"]["busy"]:
        assert time.monotonic() < deadline, "the replica's slot was never released"
        time.sleep(0.02)
    assert backend.calls == 1
    assert fd.score("svc", KEY, json={}).status_code == 200
    # half a request, then gone: nothing reaches the replica
    client = Client(fd.url)
    client.send(score_request(b"{}")[:-10])
    client.close()
    time.sleep(0.1)
    assert backend.calls == 2


def test_http_1_0_closes_after_the_response(native):
    fd = native()
    client = Client(fd.url)
    client.send(b"GET / HTTP/1.0\r\n\r\n")
    status, headers, _ = client.response()
    assert status == 200 and headers["connection"] == "close"
    assert client.closed()
    client.close()


def test_an_idle_connection_is_closed_after_the_keep_alive_timeout(native):
    fd = native(keep_alive_timeout=0.2)
    client = Client(fd.url)
    client.send(b"GET / HTTP/1.1\r\nHost: fd\r\n\r\n")
    assert client.response()[0] == 200
    started = time.monotonic()
    assert client.closed()
    assert time.monotonic() - started < 3
    client.close()


def test_shutdown_answers_the_request_in_flight_then_closes(backends):
    token = secrets.token_urlsafe(16)
    app = FrontDoor(token)
    served = ServedNative(app).start()
    harness = FrontDoorHarness(app, served, token)
    _, url = backends("b", delay=0.5)
    harness.put_ok("svc", plain("svc", [url]))
    idle = Client(served.url)
    busy = Client(served.url)
    busy.send(b"POST /api/v1/service/svc/score HTTP/1.1\r\nHost: fd\r\nContent-Length: 2\r\n\r\n{}")
    time.sleep(0.1)
    stopper = threading.Thread(target=served.stop)
    stopper.start()
    status, headers, _ = busy.response()
    assert status == 200 and headers["connection"] == "close"
    assert busy.closed() and idle.closed()
    stopper.join(10)
    assert not stopper.is_alive()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", served.port), timeout=1)
    harness.http.close()
    idle.close()
    busy.close()


def test_deadlines_cancel_only_the_tasks_whose_time_came():
    import asyncio

    from aml_core.frontdoor.app import _Deadlines

    async def scenario() -> dict[str, float | None]:
        loop = asyncio.get_running_loop()
        deadlines = _Deadlines(loop)
        began = loop.time()
        cancelled: dict[str, float | None] = {}

        async def sleeper(name: str, delay: float, end_after: float | None = None) -> None:
            deadline = deadlines.start(asyncio.current_task(), delay)
            try:
                await asyncio.sleep(end_after if end_after is not None else 10)
                cancelled[name] = None
            except asyncio.CancelledError:
                assert deadline.expired
                cancelled[name] = loop.time() - began
            finally:
                deadlines.end(deadline)

        await asyncio.gather(sleeper("late", 0.2), sleeper("early", 0.05),
                             sleeper("done in time", 0.1, end_after=0.02), sleeper("middle", 0.1))
        return cancelled

    got = asyncio.run(scenario())
    assert got["done in time"] is None
    assert 0.05 <= got["early"] < got["middle"] < got["late"]
    assert 0.1 <= got["middle"] < 0.2 <= got["late"] < 0.5


def test_ended_deadlines_behind_a_long_one_do_not_pile_up():
    import asyncio

    from aml_core.frontdoor.app import _Deadlines

    async def scenario() -> None:
        deadlines = _Deadlines(asyncio.get_running_loop())
        task = asyncio.current_task()
        stuck = deadlines.start(task, 60)
        for _ in range(10_000):
            deadlines.end(deadlines.start(task, 60))
        assert len(stuck.queue.entries) <= 2 * stuck.queue.live + 65
        deadlines.end(stuck)

    asyncio.run(scenario())
