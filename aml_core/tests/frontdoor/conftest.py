"""Fixtures: the front door (on its own HTTP server, and as an ASGI app on uvicorn: every test
using the ``frontdoor`` fixture runs on both) and fake replicas served by uvicorn, on
127.0.0.1."""

from __future__ import annotations

import secrets
import socket

import pytest
from aml_core.frontdoor import FrontDoor
from frontdoor_testkit import Backend, FakeClock, FrontDoorHarness, Served, ServedNative


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["native", "asgi"])
def frontdoor(request, clock):
    token = secrets.token_urlsafe(16)
    app = FrontDoor(token, clock=clock, token_refresh_after_s=60, token_grace_s=120)
    served = (ServedNative(app) if request.param == "native" else Served(app)).start()
    harness = FrontDoorHarness(app, served, token)
    yield harness
    harness.http.close()
    served.stop()


@pytest.fixture
def backends():
    """``make(tag, delay=0.0) -> (Backend, url)``; all stopped after the test."""
    started: list[Served] = []

    def make(tag: str, delay: float = 0.0) -> tuple[Backend, str]:
        backend = Backend(tag, delay)
        served = Served(backend).start()
        started.append(served)
        return backend, served.url

    yield make
    for served in started:
        served.stop()


@pytest.fixture
def dead_url() -> str:
    """A loopback URL nothing listens on (bound then closed)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"
