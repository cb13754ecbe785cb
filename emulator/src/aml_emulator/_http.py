"""Running an ASGI app on a loopback ephemeral port in a background thread."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from typing import Any

import uvicorn


class BackgroundServer:
    """One uvicorn server on 127.0.0.1 (by default), in its own thread and event loop.

    The socket is bound before the thread starts, so ``port`` is known at once and two
    servers never race for a port.
    """

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
        name: str = "aml-emulator",
        ws: str = "auto",
    ) -> None:
        self.app = app
        self.host = host
        self.name = name
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit this on Linux; without it every keep-alive response whose
        # headers and body go out as separate writes waits ~40 ms for the delayed ACK.
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.bind((host, port))
        self._sock.listen(1024)
        self.port = self._sock.getsockname()[1]
        self.scheme = "https" if certfile else "http"
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ssl_certfile=certfile,
            ssl_keyfile=keyfile,
            timeout_keep_alive=30,
            # idle keep-alive clients must not hold stop() for the whole join timeout
            timeout_graceful_shutdown=2,
            h11_max_incomplete_event_size=1 << 20,
            ws=ws,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def start(self) -> "BackgroundServer":
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        deadline = 50.0
        waited = 0.0
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"{self.name} server failed to start")
            threading.Event().wait(0.01)
            waited += 0.01
            if waited > deadline:
                raise RuntimeError(f"{self.name} server did not start within {deadline:.0f}s")
        return self

    def _run(self) -> None:
        # uvicorn must not install signal handlers outside the main thread.
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        asyncio.run(self._server.serve(sockets=[self._sock]))

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._sock.close()
