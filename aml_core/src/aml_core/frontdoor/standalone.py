"""Serving the front door as its own process: what ``python -m aml_core.frontdoor`` and the
AKS provider's cluster-watching host (``python -m aml_provider_aks.frontdoor_host``) share.

The front door's own HTTP/1.1 server (:mod:`aml_core.frontdoor.server`) on uvloop (when
installed), ``TCP_NODELAY`` on the listening socket, and a clean exit (status 0) on SIGTERM or
SIGINT once in-flight requests are answered. (The ASGI form of the same app is what the
emulator serves in-process, on uvicorn.)
"""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Callable
from typing import Any

#: the admin token itself, for hosts that get it from the environment (a Secret as env var)
TOKEN_ENV = "AML_FRONTDOOR_ADMIN_TOKEN"


class UsageError(Exception):
    """Bad command-line input; the message says what to fix."""


def add_arguments(parser: argparse.ArgumentParser, *, default_host: str = "127.0.0.1") -> None:
    """``--host``, ``--port`` and ``--admin-token-file``."""
    parser.add_argument("--host", default=default_host, help=f"address to listen on (default {default_host})")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    parser.add_argument("--admin-token-file",
                        help=f"file holding the admin API's bearer token (never pass it on the command line); "
                             f"without it, ${TOKEN_ENV} holds the token")


def admin_token(args: argparse.Namespace) -> str:
    """The admin token from ``--admin-token-file``, else ``$AML_FRONTDOOR_ADMIN_TOKEN``."""
    if args.admin_token_file:
        try:
            with open(args.admin_token_file, encoding="utf-8") as fh:
                token = fh.read().strip()
        except OSError as exc:
            raise UsageError(f"cannot read --admin-token-file: {exc.strerror}") from exc
        if not token:
            raise UsageError("the admin token file is empty")
        return token
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise UsageError(f"give --admin-token-file FILE (or set {TOKEN_ENV})")
    return token


def listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted sockets inherit TCP_NODELAY; without it keep-alive answers wait on Nagle
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(1024)
    return sock


def serve(app: Any, sock: socket.socket, *, on_started: Callable[[], None] | None = None) -> None:
    """Serve the front door ``app`` on ``sock`` until SIGTERM or SIGINT (from the main thread).

    ``on_started`` runs on a helper thread once the server accepts requests (its lifespan
    startup done); it is not called if the server stops first.
    """
    from aml_core.frontdoor import server

    server.serve(app, sock, on_started=on_started)

