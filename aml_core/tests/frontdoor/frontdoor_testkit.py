"""Helpers for the front door tests: the front door's own server or uvicorn in a thread, fake
replicas, a fake clock."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from typing import Any

import requests
import uvicorn
from aml_core.frontdoor import FrontDoor


class Served:
    """An ASGI app on a loopback ephemeral port, in its own thread and event loop."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        # accepted sockets inherit it; without it keep-alive responses wait ~40 ms on Nagle
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                                    lifespan="on", loop="asyncio", http="httptools"))
        self.server.install_signal_handlers = lambda: None  # not the main thread
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])),
                                       daemon=True)

    def start(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


class ServedNative:
    """A :class:`FrontDoor` on the front door's own HTTP server (``aml_core.frontdoor.server``),
    on a loopback ephemeral port, in its own thread and event loop."""

    def __init__(self, frontdoor: FrontDoor, **options: Any) -> None:
        from aml_core.frontdoor.server import HttpServer

        self.app = frontdoor
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = HttpServer(frontdoor, **options)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> ServedNative:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(self.sock), self.loop).result(10)
        return self

    def stop(self) -> None:
        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop).result(40)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
        self.loop.close()
        self.sock.close()


class Backend:
    """A fake replica: ``/score`` answers JSON naming this backend; headers steer it.

    ``x-delay: seconds`` sleeps first, ``x-status: code`` sets the status; the request id
    headers are echoed. ``calls`` counts requests that reached it.
    """

    def __init__(self, tag: str, delay: float = 0.0) -> None:
        self.tag = tag
        self.delay = delay
        self.calls = 0
        self.seen_auth: list[bytes | None] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.calls += 1
        headers = dict(scope["headers"])
        self.seen_auth.append(headers.get(b"authorization"))
        delay = float(headers.get(b"x-delay", self.delay))
        if delay:
            await asyncio.sleep(delay)
        status = int(headers.get(b"x-status", 200))
        payload = json.dumps({"backend": self.tag, "method": scope["method"], "path": scope["path"],
                              "query": scope["query_string"].decode(), "body": body.decode()}).encode()
        out = [(b"content-type", b"application/json"), (b"x-backend", self.tag.encode())]
        for name in (b"x-ms-request-id", b"x-request-id"):
            if name in headers:
                out.append((name, headers[name]))
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": payload})


class FrontDoorHarness:
    def __init__(self, app: FrontDoor, served: Served | ServedNative, token: str) -> None:
        self.app = app
        self.url = served.url
        self.token = token
        self.http = requests.Session()

    @property
    def admin(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def put(self, name: str, body: dict) -> requests.Response:
        return self.http.put(f"{self.url}/-/services/{name}", json=body, headers=self.admin, timeout=10)

    def put_ok(self, name: str, body: dict) -> dict:
        resp = self.put(name, body)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def score_url(self, name: str) -> str:
        return f"{self.url}/api/v1/service/{name}/score"

    def score(self, name: str, key: str | None = None, **kw) -> requests.Response:
        headers = kw.pop("headers", {})
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return self.http.post(self.score_url(name), headers=headers, timeout=kw.pop("timeout", 10), **kw)

    def metrics(self) -> dict:
        resp = self.http.get(f"{self.url}/-/metrics", headers=self.admin, timeout=10)
        assert resp.status_code == 200, resp.text
        return resp.json()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def plain(name: str, backends: list[str], **extra) -> dict:
    """A plain AKS service: one version named like the service, default, 100%."""
    body = {"auth": "none", "versions": {name: {"backends": backends, "traffic_percentile": 100,
                                                "is_default": True}}}
    body.update(extra)
    return body


