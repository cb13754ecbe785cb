"""One scoring worker process: load the script, ``init()``, then serve on the inherited socket.

Forked by the supervisor with the listening socket, a status pipe and its configuration. It
reports JSON lines on the status pipe: ``{"status": "ready"}`` once ``init()`` has finished
*and* the socket is being served; ``{"status": "draining"}`` once it has stopped accepting
(on SIGTERM); or ``{"status": "failed", "error": "..."}`` before exiting with code 3.

SIGTERM stops it gracefully: it stops accepting, keeps serving for a short drain period (so a
connection accepted just before the stop still gets its answer, with ``Connection: close``),
then waits for in-flight requests. It dies with its supervisor (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import json
import logging
import os
import signal
import socket
import ssl
import sys
import traceback

from aml_core.errors import InvalidConfig
from aml_core.runtime import logs
from aml_core.runtime.config import search_path
from aml_core.runtime.script import (
    EXIT_SCRIPT_FAILED,
    ScriptError,
    describe_exception,
    install_azureml_aliases,
    load_script,
    model_tree,
)

DRAIN_SECONDS = float(os.environ.get("AML_RUNTIME_DRAIN_SECONDS", "0.25"))
GRACEFUL_TIMEOUT_SECONDS = int(os.environ.get("AML_RUNTIME_GRACEFUL_TIMEOUT", "30"))
ACCEPT_DELAY_PER_CONNECTION = 0.0003  # seconds per connection this worker already holds
ACCEPT_DELAY_MAX = 0.005
_PR_SET_PDEATHSIG = 1

logger = logging.getLogger(logs.LOGGER_NAME)


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - non-glibc platforms
            pass
    if parent_pid and os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


class _StatusPipe:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, close: bool = False, **message) -> None:
        if self.fd < 0:
            return
        try:
            os.write(self.fd, (json.dumps(message) + "\n").encode("utf-8"))
        except OSError:
            close = True
        if close:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = -1


def _fail(status: _StatusPipe, error: str) -> int:
    status.send(status="failed", error=error, close=True)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    return EXIT_SCRIPT_FAILED


def main(sock: socket.socket, status_fd: int, config: dict) -> int:
    """Serve until stopped; returns the exit status (3 when the script cannot start)."""
    _die_with_parent(int(config.get("parent_pid") or 0))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    status = _StatusPipe(status_fd)
    sys.argv = [sys.argv[0]]  # the user's script must not see the supervisor's options
    os.environ.update(config.get("env") or {})
    if config.get("model_dir"):
        os.environ["AZUREML_MODEL_DIR"] = config["model_dir"]
    logs.setup_logging(level=os.environ.get("AZUREML_LOG_LEVEL", "INFO"))
    logs.prefix_user_output()
    logs.current_request_id = logs.NULL_REQUEST_ID

    aliases = install_azureml_aliases()
    if aliases:
        logger.debug("Installed alias modules: %s", ", ".join(aliases))
    dirs = search_path(config)
    try:
        script = load_script(config.get("entry_script"), dirs)
    except ScriptError as exc:
        logger.error("%s", exc)
        if exc.__cause__ is not None:
            logger.error(
                "Traceback:\n%s",
                "".join(traceback.format_exception(exc.__cause__)).rstrip(),
            )
        return _fail(status, str(exc))
    logger.info("Found user script at %s", getattr(script.module, "__file__", "main"))
    logger.info("%s", script.describe())

    logger.info("Invoking user's init function")
    try:
        script.init()
    except BaseException as exc:  # noqa: BLE001 - SystemExit in init() is a failed init too
        logger.error("User's init function failed")
        logger.error("Encountered Exception %s", traceback.format_exc().rstrip())
        _log_model_dir(config.get("model_dir"))
        return _fail(status, f"init() failed: {describe_exception(exc)}")
    logger.info("User's init has completed successfully")

    from aml_core.runtime.app import ScoringApp, install_timeout_handler
    from aml_core.runtime.security import scoring_keys, tls_context
    from aml_core.runtime.swagger import SwaggerDocs

    try:
        auth_keys = scoring_keys()
        tls = tls_context()
    except InvalidConfig as exc:
        logger.error("%s", exc)
        return _fail(status, str(exc))
    if auth_keys:
        logger.info("Key auth is on: /score needs 'Authorization: Bearer <key>'")

    try:
        swagger = SwaggerDocs.for_script(
            script.run,
            dirs,
            service_name=os.environ.get("SERVICE_NAME", "ML service"),
            service_version=os.environ.get("SERVICE_VERSION", "1.0"),
            path_prefix=config.get("path_prefix", ""),
        )
    except Exception as exc:  # noqa: BLE001 - a broken swagger must not stop scoring
        logger.warning("No swagger document: %s", describe_exception(exc))
        swagger = None
    app = ScoringApp(
        script,
        timeout_ms=config["scoring_timeout_ms"],
        max_body_bytes=config["max_body_bytes"],
        swagger=swagger,
        path_prefix=config.get("path_prefix", ""),
        server_version=os.environ.get("HTTP_X_MS_SERVER_VERSION", ""),
        access_log=os.environ.get("AML_ACCESS_LOG", "1").lower() not in ("0", "false", "no"),
        cors_origins=os.environ.get("AML_CORS_ORIGINS", ""),
        auth_keys=auth_keys,
    )
    install_timeout_handler()
    logger.info("Scoring timeout is set to %d ms", app.timeout_ms)

    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    gc.collect()
    gc.freeze()  # the model and libraries stay out of every later collection
    server = _make_server(app, status, balance=int(config.get("workers") or 1) > 1, tls=tls)
    server.run(sockets=[sock])
    return 0


def _log_model_dir(model_dir: str | None) -> None:
    if not model_dir:
        logger.info("AZUREML_MODEL_DIR is not set.")
        return
    if not os.path.exists(model_dir):
        logger.info("The model directory %s does not exist.", model_dir)
        return
    logger.info("Model Directory Contents:")
    for line in model_tree(model_dir):
        logger.info("%s", line)


def _make_server(app, status: _StatusPipe, balance: bool, tls=None):
    import uvicorn

    uvicorn_logger = logging.getLogger("uvicorn.error")
    uvicorn_logger.handlers = logging.getLogger(logs.LOGGER_NAME).handlers
    uvicorn_logger.setLevel(logging.WARNING)
    uvicorn_logger.propagate = False
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        loop = "asyncio"
    config = uvicorn.Config(
        app,
        loop=loop,
        http="httptools",
        lifespan="off",
        access_log=False,
        server_header=False,
        log_config=None,
        log_level="warning",
        timeout_graceful_shutdown=GRACEFUL_TIMEOUT_SECONDS,
        backlog=2048,
    )

    class WorkerServer(uvicorn.Server):
        acceptor: _Acceptor | None = None

        async def startup(self, sockets=None) -> None:
            # uvicorn's own startup would hand the socket to loop.create_server, whose accept
            # loop (libuv) takes every pending connection at once: with several workers on one
            # socket, one of them often ends up with all of a client's keep-alive connections
            await self.lifespan.startup()
            loop = asyncio.get_running_loop()

            def create_protocol(_loop=None):
                return config.http_protocol_class(
                    config=config,
                    server_state=self.server_state,
                    app_state=self.lifespan.state,
                    _loop=_loop,
                )

            self.servers = []
            self.acceptor = _Acceptor(
                loop, sockets[0], create_protocol, self.server_state.connections, balance, tls
            )
            self.acceptor.start()
            self.started = True
            logger.info("Worker with pid %d ready for serving traffic", os.getpid())
            status.send(status="ready", pid=os.getpid())

        async def shutdown(self, sockets=None) -> None:
            app.draining = True
            if self.acceptor is not None:
                self.acceptor.close()
            # from here on this worker accepts no connection: the supervisor may say so
            status.send(status="draining", pid=os.getpid(), close=True)
            await asyncio.sleep(DRAIN_SECONDS)
            await super().shutdown(sockets=sockets)
            if app.access_log is not None:
                app.access_log.flush()

    return WorkerServer(config)


class _Acceptor:
    """Accept connections one at a time, letting less loaded sibling workers go first.

    All workers wait on the same listening socket. A worker with ``n`` open connections waits
    ``n`` × :data:`ACCEPT_DELAY_PER_CONNECTION` before taking a pending connection, so an idle
    sibling (or one with fewer connections) wins it; a worker busy inside ``run()`` is not
    polling at all. With one worker there is no delay.
    """

    def __init__(self, loop, sock: socket.socket, protocol_factory, connections, balance: bool,
                 tls=None):
        self.loop = loop
        #: an ``ssl.SSLContext`` when the server speaks HTTPS (``ssl_enabled``)
        self.tls = tls
        self.sock = sock
        self.fd = sock.fileno()
        self.protocol_factory = protocol_factory
        self.connections = connections
        self.balance = balance
        self.closed = False
        self.waiting = False
        self.connecting = 0  # accepted, transport not made yet (not in ``connections``)
        #: a connection that has not sent one complete request head by then is closed
        self.header_timeout = float(os.environ.get("AML_HEADER_TIMEOUT_SECONDS", "30"))
        sock.setblocking(False)

    def start(self) -> None:
        self.loop.add_reader(self.fd, self._readable)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if not self.waiting:
                self.loop.remove_reader(self.fd)

    def _readable(self) -> None:
        open_connections = len(self.connections) + self.connecting
        if self.balance and open_connections:
            self.loop.remove_reader(self.fd)
            self.waiting = True
            delay = min(ACCEPT_DELAY_PER_CONNECTION * open_connections, ACCEPT_DELAY_MAX)
            self.loop.call_later(delay, self._resume)
            return
        self._accept_one()

    def _resume(self) -> None:
        self.waiting = False
        if self.closed:
            return
        self._accept_one()
        self.loop.add_reader(self.fd, self._readable)

    def _accept_one(self) -> None:
        try:
            conn, _addr = self.sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # a sibling took it
        except OSError as exc:  # EMFILE and friends: log, keep serving the open connections
            logger.error("accept() failed: %s", exc)
            return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connecting += 1
        self.loop.create_task(self._connect(conn))

    async def _connect(self, conn: socket.socket) -> None:
        try:
            transport, protocol = await self.loop.connect_accepted_socket(
                self.protocol_factory, sock=conn, ssl=self.tls
            )
        except (OSError, ssl.SSLError):
            conn.close()
            return
        finally:
            self.connecting -= 1
        if self.header_timeout > 0:
            self.loop.call_later(self.header_timeout, _close_if_silent, transport, protocol)


def _close_if_silent(transport, protocol) -> None:
    """Slow-loris guard: close a connection that never completed its first request head.

    (After a first request, uvicorn's keep-alive timeout closes idle connections.)
    """
    if getattr(protocol, "cycle", None) is None and not transport.is_closing():
        logger.warning("Closing a connection that sent no complete request within the timeout")
        transport.close()
