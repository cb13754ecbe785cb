"""``python -m aml_core.frontdoor --host H --port P --admin-token-file F``: serve the front door."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aml_core.frontdoor",
                                     description="Serve the front door (router before scoring services).")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    parser.add_argument("--admin-token-file", required=True,
                        help="file holding the admin API's bearer token (never pass it on the command line)")
    args = parser.parse_args(argv)
    try:
        with open(args.admin_token_file, encoding="utf-8") as fh:
            token = fh.read().strip()
    except OSError as exc:
        print(f"error: cannot read --admin-token-file: {exc.strerror}", file=sys.stderr)
        return 2
    if not token:
        print("error: the admin token file is empty", file=sys.stderr)
        return 2

    import socket

    import uvicorn

    from aml_core.frontdoor import FrontDoor

    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted sockets inherit TCP_NODELAY; without it keep-alive answers wait on Nagle
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((args.host, args.port))
    sock.listen(1024)
    print(f"front door listening on {args.host}:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(FrontDoor(token), loop=loop, http="httptools", lifespan="on",
                            log_level="warning", access_log=False, server_header=False,
                            timeout_keep_alive=30)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
