"""The front door: admin API, auth, traffic split, per-replica limits, proxying.

The routing logic does not depend on a server: :meth:`FrontDoor.head` decides from a
request's method, path and headers, before its body, either the final response or a
:class:`PendingCall` that takes the body. Two servers drive it: :class:`FrontDoor` is a raw
ASGI callable (the emulator serves it in-process with uvicorn), and
:mod:`aml_core.frontdoor.server` is the front door's own HTTP/1.1 server, used when it runs as
its own process, because per proxied request uvicorn's ASGI machinery cost about as much CPU
as the rest of the front door. Backends are reached through one
:class:`~aml_core.frontdoor.upstream.UpstreamClient` (pooled keep-alive HTTP/1.1 connections
with ``TCP_NODELAY``, responses parsed by httptools), created lazily on the serving event loop.

A response is ``(status, headers, body)``: ``headers`` a list of ``(name, value)`` bytes pairs
without ``Content-Length``, which the server adds.

Routes::

    GET  /                                    the front door's own health
    POST|GET|OPTIONS /api/v1/service/{name}/score   proxied to a replica's /score
    GET  /api/v1/service/{name}/swagger.json  proxied to a replica's /swagger.json
    PUT|GET|DELETE /-/services/{name}         admin: the service's routing entry
    GET  /-/services                          admin: the names
    POST /-/services/{name}/token             admin: a token for auth "token"
    GET  /-/metrics                           admin: per version load, for the autoscaler
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aml_core.frontdoor.config import ConfigError, ServiceEntry, Version
from aml_core.frontdoor.pool import Pool, Replica
from aml_core.frontdoor.tokens import DEFAULT_GRACE_S, DEFAULT_REFRESH_AFTER_S, TokenIssuer
from aml_core.frontdoor.upstream import UpstreamClient, UpstreamError

logger = logging.getLogger("aml_core.frontdoor")

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
#: ``(status, headers, body)``; ``headers`` are bytes pairs, ``Content-Length`` not among them
Response = tuple[int, list[tuple[bytes, bytes]], bytes]

SCORE_PREFIX = "/api/v1/service/"
ADMIN_PREFIX = "/-/services"
DEFAULT_MAX_BODY_BYTES = 100 * 1024 * 1024
ADMIN_MAX_BODY_BYTES = 1 << 20

_CONTENT_TYPE_JSON = (b"content-type", b"application/json")
_JSON = [_CONTENT_TYPE_JSON]
_HEALTHY: Response = (200, _JSON, b'{"status": "Healthy"}')
# not forwarded either way: hop-by-hop headers, the client's credentials (user code in the
# replica never sees the service key or token), and what the two HTTP stacks set themselves
_DROP_REQUEST = frozenset({b"host", b"connection", b"keep-alive", b"transfer-encoding", b"te",
                           b"upgrade", b"proxy-connection", b"content-length", b"authorization",
                           b"expect", b"trailer"})
_DROP_RESPONSE = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"content-length",
                            b"upgrade", b"proxy-connection", b"trailer", b"date", b"server"})


class _Deadline:
    __slots__ = ("expired", "queue", "task", "when")

    def __init__(self, task: asyncio.Task, when: float, queue: _DeadlineQueue) -> None:
        self.task: asyncio.Task | None = task  # None once ended or expired
        self.when = when
        self.queue = queue
        self.expired = False


class _DeadlineQueue:
    """The deadlines of one duration: they come due in the order they were started."""

    __slots__ = ("delay", "entries", "live", "loop", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        self.loop = loop
        self.delay = delay
        self.entries: deque[_Deadline] = deque()
        self.live = 0  # entries not ended yet
        self.timer: asyncio.TimerHandle | None = None

    def add(self, task: asyncio.Task) -> _Deadline:
        deadline = _Deadline(task, self.loop.time() + self.delay, self)
        entries = self.entries
        if len(entries) > 2 * self.live + 64:  # ended ones stuck behind a long request
            self.entries = entries = deque(d for d in entries if d.task is not None)
        entries.append(deadline)
        self.live += 1
        if self.timer is None:
            self.timer = self.loop.call_at(deadline.when, self._fire)
        return deadline

    def end(self, deadline: _Deadline) -> None:
        if deadline.task is not None:
            deadline.task = None
            self.live -= 1

    def _fire(self) -> None:
        self.timer = None
        now = self.loop.time()
        entries = self.entries
        while entries:
            deadline = entries[0]
            task = deadline.task
            if task is not None:
                if deadline.when > now:
                    self.timer = self.loop.call_at(deadline.when, self._fire)
                    return
                deadline.task = None
                self.live -= 1
                deadline.expired = True
                task.cancel()
            entries.popleft()


class _Deadlines:
    """Cancels each task whose deadline passed, with one event-loop timer per duration.

    Why not ``asyncio.timeout`` per request: its loop timer (plus the context manager) cost
    ~5-8 us per proxied request on uvloop. Deadlines of one duration (a service's scoring
    timeout) come due in the order they start, so each duration keeps a queue and one timer
    set for its oldest live deadline: a request that ends early only marks its entry, and
    the timer, when it fires, drops ended entries, cancels the due ones and is set again for
    the next. A deadline fires on time, as ``asyncio.timeout`` would.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._queues: dict[float, _DeadlineQueue] = {}

    def start(self, task: asyncio.Task, delay: float) -> _Deadline:
        """Cancel ``task`` in ``delay`` seconds unless :meth:`end` comes first."""
        queue = self._queues.get(delay)
        if queue is None:
            queue = self._queues[delay] = _DeadlineQueue(self.loop, delay)
        return queue.add(task)

    def end(self, deadline: _Deadline) -> None:
        deadline.queue.end(deadline)


class _Routed:
    """A service's current entry with its pools and cumulative traffic thresholds."""

    __slots__ = ("default", "entry", "pools", "thresholds", "version_headers")

    def __init__(self, entry: ServiceEntry, pools: dict[str, Pool]) -> None:
        self.entry = entry
        self.pools = pools
        self.default = entry.default_version
        # the response header naming the version that answered
        self.version_headers = {v.name: (b"x-ms-version", v.name.encode("latin-1")) for v in entry.versions}
        thresholds: list[tuple[float, Version]] = []
        acc = 0
        for version in entry.versions:
            if version.traffic_percentile:
                acc += version.traffic_percentile
                thresholds.append((acc, version))
        self.thresholds = thresholds

    def choose(self, rng: random.Random) -> Version:
        if not self.thresholds:
            return self.default
        x = rng.random() * 100.0
        for limit, version in self.thresholds:
            if x < limit:
                return version
        return self.default  # the unassigned remainder


def deployment_name(service: str, version: str) -> str:
    """The Kubernetes Deployment that runs ``version`` of ``service``: the service's name for
    a plain service (one version named like it), ``<endpoint>-<version>`` for an endpoint."""
    return service if version == service else f"{service}-{version}"


def _error(status: int, code: str, message: str, *extra: tuple[bytes, bytes]) -> Response:
    """A JSON error response: ``{"error": {"code": ..., "message": ...}}``."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return status, [_CONTENT_TYPE_JSON, *extra], body


def _json(value: Any) -> Response:
    return 200, _JSON, json.dumps(value).encode()


class PendingCall:
    """A request :meth:`FrontDoor.head` accepted, waiting for its body.

    ``limit`` is the largest body it takes: the server answers :meth:`too_large` instead of
    calling :meth:`call` with a larger one (and need not read the rest of it).
    """

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def too_large(self) -> Response:
        return _error(413, "PayloadTooLarge", f"the request body is larger than {self.limit} bytes")

    async def call(self, query: bytes, body: bytes) -> Response:
        """The response, given the query string (without ``?``) and the whole body."""
        raise NotImplementedError


class FrontDoor:
    """The router in front of cluster-hosted scoring services (Azure ML's front end).

    :param admin_token: the bearer token of the admin API (``/-/...``).
    :param clock: seconds clock for token issue and expiry (moved by tests); its offset to
        the epoch is fixed at construction.
    :param token_refresh_after_s: a token's ``refreshAfter`` is issue time plus this.
    :param token_grace_s: a token stays valid this long after ``refreshAfter``.
    :param max_body_bytes: larger request bodies get 413 without reaching a replica.
    """

    def __init__(self, admin_token: str, *, clock: Callable[[], float] = time.monotonic,
                 token_refresh_after_s: float = DEFAULT_REFRESH_AFTER_S,
                 token_grace_s: float = DEFAULT_GRACE_S,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        if not admin_token:
            raise ValueError("the front door needs a non-empty admin token")
        self._admin = admin_token.encode()
        self._clock = clock
        offset = time.time() - clock()
        self.tokens = TokenIssuer(lambda: clock() + offset, refresh_after_s=token_refresh_after_s,
                                  grace_s=token_grace_s)
        self.max_body_bytes = max_body_bytes
        self._services: dict[str, _Routed] = {}
        # "<namespace>/<service>" -> the ready replicas' base URLs, fed by the host
        self._upstreams: dict[str, tuple[str, ...]] = {}
        self._serving_loop: asyncio.AbstractEventLoop | None = None
        self._rng = random.Random()
        self._session: Any = None
        self._deadlines: _Deadlines | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"FrontDoor(services={sorted(self._services)!r})"

    # ------------------------------------------------------------------ public helpers
    def metrics(self) -> dict:
        """``{"services": {name: {"versions": {version: {...}}}}}``; safe from any thread."""
        out: dict[str, Any] = {}
        for name, routed in list(self._services.items()):
            out[name] = {"versions": {v: pool.snapshot() for v, pool in list(routed.pools.items())}}
        return {"services": out}

    def utilization_by_deployment(self) -> dict[str, float]:
        """Utilization percent per Kubernetes Deployment name (see :func:`deployment_name`),
        for an autoscaler; safe from any thread."""
        out: dict[str, float] = {}
        for name, routed in list(self._services.items()):
            for version, pool in list(routed.pools.items()):
                out[deployment_name(name, version)] = pool.snapshot()["utilization"]
        return out

    def clear(self) -> None:
        """Forget every service (and its token secret), as after a fresh start."""
        for name in list(self._services):
            self._services.pop(name, None)
            self.tokens.forget(name)
        self._upstreams.clear()

    # ------------------------------------------------------------------ host feeds
    # A host (the emulator's cluster, or the front door's pod watching a real cluster) calls
    # these from its own thread; pools are only touched on the serving loop.
    def _on_loop(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._serving_loop
        if loop is None or loop.is_closed():
            fn(*args)  # nothing is served yet, so nothing can be waiting on a pool
            return
        try:
            if asyncio.get_running_loop() is loop:
                fn(*args)
                return
        except RuntimeError:
            pass
        loop.call_soon_threadsafe(fn, *args)

    def set_upstream(self, upstream: str, backends: tuple[str, ...] | list[str]) -> None:
        """Set the ready replicas of ``upstream`` (``"<namespace>/<service>"``)."""
        self._on_loop(self._set_upstream, upstream, tuple(dict.fromkeys(b.rstrip("/") for b in backends)))

    def _set_upstream(self, upstream: str, backends: tuple[str, ...]) -> None:
        if not backends:
            self._upstreams.pop(upstream, None)
        elif self._upstreams.get(upstream) == backends:
            return
        else:
            self._upstreams[upstream] = backends
        for routed in list(self._services.values()):
            for version in routed.entry.versions:
                if version.upstream == upstream:
                    routed.pools[version.name].update(backends, routed.entry.max_concurrent_requests_per_replica)

    def put_service(self, name: str, payload: Any) -> ServiceEntry:
        """Store a service entry from its admin-API payload; raises :class:`ConfigError`."""
        entry = ServiceEntry.from_payload(name, payload)
        self._on_loop(self._store, entry)
        return entry

    def remove_service(self, name: str) -> bool:
        """Forget a service and its token secret; ``False`` if it was unknown."""
        known = name in self._services
        self._on_loop(self._remove, name)
        return known

    def _remove(self, name: str) -> None:
        if self._services.pop(name, None) is not None:
            self.tokens.forget(name)

    def describe(self, name: str) -> dict | None:
        """The entry as the admin API shows it (keys masked), each version with the
        replicas it currently routes to; ``None`` if unknown."""
        routed = self._services.get(name)
        if routed is None:
            return None
        out = routed.entry.to_dict()
        for vname, pool in routed.pools.items():
            out["versions"][vname]["replicas"] = [r.url for r in pool.replicas]
        return out

    async def aclose(self) -> None:
        """Close the pooled connections to the backends."""
        client, self._session = self._session, None
        if client is not None:
            await client.aclose()

    def close(self, timeout: float = 5.0) -> None:
        """:meth:`aclose` from another thread, while the serving loop still runs."""
        loop = self._loop
        if self._session is None or loop is None or loop.is_closed() or not loop.is_running():
            return
        try:
            asyncio.run_coroutine_threadsafe(self.aclose(), loop).result(timeout)
        except Exception:
            logger.debug("closing the front door's upstream connections failed", exc_info=True)

    def _client(self) -> UpstreamClient:
        if self._session is None:
            self._loop = asyncio.get_running_loop()
            self._session = UpstreamClient(connect_timeout=5.0, idle_timeout=30.0)
            self._deadlines = _Deadlines(self._loop)
        return self._session

    # ------------------------------------------------------------------ serving
    def head(self, method: str, path: str, headers: list[tuple[bytes, bytes]]) -> Response | PendingCall:
        """Decide a request from its head: its final response, or a :class:`PendingCall`
        that takes the body. ``path`` is percent-decoded, without the query; ``headers``
        are ``(lower-case name, value)`` bytes pairs. Runs on the serving event loop."""
        if self._serving_loop is None:
            self._serving_loop = asyncio.get_running_loop()
        if path.startswith(SCORE_PREFIX):
            return self._score_head(method, path, headers)
        if path.startswith("/-/"):
            return self._admin_head(method, path, headers)
        if path == "/":
            return _HEALTHY
        return _error(404, "NotFound", f"no route for {path}")

    async def startup(self) -> None:
        """The server starts serving on the running loop."""
        self._serving_loop = asyncio.get_running_loop()

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        """The ASGI application (HTTP and lifespan)."""
        kind = scope["type"]
        if kind == "http":
            decided = self.head(scope["method"], scope["path"], scope["headers"])
            if type(decided) is tuple:
                await _respond(send, decided)
                return
            body, too_big = await _read_body(receive, decided.limit)
            if too_big:
                await _respond(send, decided.too_large())
                return
            await _respond(send, await decided.call(scope.get("query_string") or b"", body))
        elif kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await self.startup()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await self.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    # ------------------------------------------------------------------ admin API
    def _is_admin(self, headers: list[tuple[bytes, bytes]]) -> bool:
        given = b""
        for name, value in headers:
            if name == b"authorization":
                given = value
                break
        scheme, _, token = given.partition(b" ")
        ok = hmac.compare_digest(token.strip(), self._admin)
        return ok and scheme.lower() == b"bearer"

    def _admin_head(self, method: str, path: str, headers: list[tuple[bytes, bytes]]) -> Response | PendingCall:
        if not self._is_admin(headers):
            return _error(401, "Unauthorized", "the admin API needs 'Authorization: Bearer <admin token>'")
        if path == "/-/metrics":
            if method != "GET":
                return _error(405, "MethodNotAllowed", "use GET")
            return _json(self.metrics())
        if path in (ADMIN_PREFIX, ADMIN_PREFIX + "/"):
            if method != "GET":
                return _error(405, "MethodNotAllowed", "use GET")
            return _json({"services": sorted(self._services)})
        if not path.startswith(ADMIN_PREFIX + "/"):
            return _error(404, "NotFound", f"no admin route {path}")
        rest = path[len(ADMIN_PREFIX) + 1:].split("/")
        name = rest[0]
        if len(rest) == 2 and rest[1] == "token":
            if method != "POST":
                return _error(405, "MethodNotAllowed", "use POST")
            routed = self._services.get(name)
            if routed is None:
                return _error(404, "NotFound", f"no service named {name!r}")
            if routed.entry.auth != "token":
                return _error(400, "BadRequest", f"token auth is not enabled for service {name!r}")
            return _json(self.tokens.issue(name))
        if len(rest) != 1 or not name:
            return _error(404, "NotFound", f"no admin route {path}")
        if method == "PUT":
            return _PutService(self, name)
        if method == "GET":
            described = self.describe(name)
            if described is None:
                return _error(404, "NotFound", f"no service named {name!r}")
            return _json(described)
        if method == "DELETE":
            if name not in self._services:
                return _error(404, "NotFound", f"no service named {name!r}")
            self._remove(name)
            return 204, _JSON, b""
        return _error(405, "MethodNotAllowed", "use PUT, GET or DELETE")

    def _store(self, entry: ServiceEntry) -> None:
        old = self._services.get(entry.name)
        known = old.pools if old is not None else {}
        pools = {}
        for version in entry.versions:
            pool = known.get(version.name) or Pool()
            backends = self._upstreams.get(version.upstream, ()) if version.upstream else version.backends
            pool.update(backends, entry.max_concurrent_requests_per_replica)
            pools[version.name] = pool
        if entry.token_key:
            self.tokens.set_secret(entry.name, entry.token_key.encode())
        else:
            self.tokens.ensure_secret(entry.name)
        # one assignment: a request reads either the old or the new entry, never a mix
        self._services[entry.name] = _Routed(entry, pools)

    # ------------------------------------------------------------------ scoring
    def _authorized(self, entry: ServiceEntry, headers: list[tuple[bytes, bytes]]) -> str | None:
        """``None`` if the request may pass, else why not."""
        if entry.auth == "none":
            return None
        given = b""
        for name, value in headers:
            if name == b"authorization":
                given = value
                break
        scheme, _, credential = given.decode("latin-1").partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            return "missing 'Authorization: Bearer <key or token>' header"
        if entry.auth == "key":
            primary = bool(entry.primary_key) & hmac.compare_digest(credential.encode(), entry.primary_key.encode())
            secondary = bool(entry.secondary_key) & hmac.compare_digest(credential.encode(), entry.secondary_key.encode())
            return None if primary | secondary else "invalid key"
        return self.tokens.check(entry.name, credential)

    def _score_head(self, method: str, path: str, headers: list[tuple[bytes, bytes]]) -> Response | PendingCall:
        name, _, tail = path[len(SCORE_PREFIX):].partition("/")
        routed = self._services.get(name)
        if routed is None:
            return _error(404, "NotFound", f"no service named {name!r}")
        if tail == "score":
            if method not in ("POST", "GET", "OPTIONS"):
                return _error(405, "MethodNotAllowed", "use POST, GET or OPTIONS")
            denied = self._authorized(routed.entry, headers)
            if denied is not None:
                return _error(401, "Unauthorized", denied, (b"www-authenticate", b"Bearer"))
            return _Scoring(self, routed, method, "/score", headers)
        if tail == "swagger.json" and method == "GET":
            return _Scoring(self, routed, method, "/swagger.json", headers)
        return _error(404, "NotFound", f"no route for {path}")

    async def _forward(self, pool: Pool, held: list[Replica | None], method: str, target: str,
                       headers: bytes, body: bytes, entry: ServiceEntry) -> Response:
        """The response of a replica (hop-by-hop headers dropped), trying a second one once
        if the first cannot be reached (refused, reset, closed before answering: any
        :class:`UpstreamError`). ``held[0]`` is always the replica counted as busy (or None)."""
        client = self._client()
        failed = held[0]
        assert failed is not None
        try:
            return await _call(client, method, failed.url, target, headers, body)
        except UpstreamError as exc:
            logger.warning("replica %s of %s failed (%s); trying another", failed.url, entry.name, exc)
        held[0] = None
        pool.release(failed)
        if not any(r is not failed for r in pool.replicas):
            return _error(502, "BadGateway", f"the replica of {entry.name} could not be reached")
        retry = await pool.acquire(entry.max_queue_wait_ms / 1000.0, exclude=failed)
        held[0] = retry
        if retry is None:
            return _error(502, "BadGateway", f"a replica of {entry.name} could not be reached "
                                             "and no other was free")
        try:
            return await _call(client, method, retry.url, target, headers, body)
        except UpstreamError as exc:
            logger.warning("replica %s of %s failed too (%s)", retry.url, entry.name, exc)
            return _error(502, "BadGateway", f"no replica of {entry.name} could be reached")


class _PutService(PendingCall):
    """``PUT /-/services/{name}``: the body is the service entry."""

    __slots__ = ("frontdoor", "name")

    def __init__(self, frontdoor: FrontDoor, name: str) -> None:
        super().__init__(ADMIN_MAX_BODY_BYTES)
        self.frontdoor = frontdoor
        self.name = name

    def too_large(self) -> Response:
        return _error(413, "PayloadTooLarge", "the service entry is larger than 1 MiB")

    async def call(self, query: bytes, body: bytes) -> Response:
        try:
            payload = json.loads(body or b"null")
        except (ValueError, RecursionError) as exc:  # deep nesting runs the decoder out of stack
            return _error(400, "BadRequest", f"the body is not valid JSON: {exc}")
        try:
            entry = ServiceEntry.from_payload(self.name, payload)
        except ConfigError as exc:
            return _error(400, "InvalidConfig", str(exc))
        self.frontdoor._store(entry)
        return _json(self.frontdoor.describe(self.name))


class _Scoring(PendingCall):
    """A call to proxy to a replica of ``routed`` (authorized already)."""

    __slots__ = ("backend_path", "frontdoor", "headers", "method", "routed")

    def __init__(self, frontdoor: FrontDoor, routed: _Routed, method: str, backend_path: str,
                 headers: list[tuple[bytes, bytes]]) -> None:
        super().__init__(frontdoor.max_body_bytes)
        self.frontdoor = frontdoor
        self.routed = routed
        self.method = method
        self.backend_path = backend_path
        self.headers = headers

    async def call(self, query: bytes, body: bytes) -> Response:
        frontdoor, routed = self.frontdoor, self.routed
        entry = routed.entry
        version = routed.choose(frontdoor._rng)
        tag = routed.version_headers[version.name]
        pool = routed.pools[version.name]
        pool.requests += 1
        replica = await pool.acquire(entry.max_queue_wait_ms / 1000.0)
        if replica is None:
            pool.rejected_503 += 1
            why = (f"no replica of {entry.name}/{version.name} was free within {entry.max_queue_wait_ms} ms"
                   if pool.replicas else f"{entry.name}/{version.name} has no ready replica")
            return _error(503, "ServiceUnavailable", why, tag)
        # the forwarded headers, serialized once (a retry sends the same bytes)
        forwarded = b"".join([name + b": " + value + b"\r\n" for name, value in self.headers
                              if name not in _DROP_REQUEST])
        target = self.backend_path + "?" + query.decode("latin-1") if query else self.backend_path
        held = [replica]  # the replica this request counts against; _forward may swap it
        frontdoor._client()  # the upstream client and the deadlines, on this loop
        task = asyncio.current_task()
        deadline = frontdoor._deadlines.start(task, entry.scoring_timeout_ms / 1000.0)
        try:
            status, headers, payload = await frontdoor._forward(pool, held, self.method, target,
                                                                forwarded, body, entry)
        except asyncio.CancelledError:
            if not deadline.expired or task.uncancel() > 0:
                raise  # cancelled by someone else (too)
            pool.timeouts_504 += 1
            return _error(504, "GatewayTimeout", f"scoring took longer than {entry.scoring_timeout_ms} ms", tag)
        finally:
            frontdoor._deadlines.end(deadline)
            if held[0] is not None:
                pool.release(held[0])
        headers.append(tag)
        return status, headers, payload


async def _call(client: UpstreamClient, method: str, base: str, target: str, headers: bytes,
                body: bytes) -> Response:
    status, raw_headers, payload = await client.request(base, method, target, body=body, raw_headers=headers)
    return status, [(k, v) for k, v in raw_headers if k.lower() not in _DROP_RESPONSE], payload


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, bool]:
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body"):
        return body, len(body) > limit
    chunks = [body]
    size = len(body)
    while message.get("more_body"):
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", True
        chunks.append(chunk)
    return b"".join(chunks), False


async def _respond(send: Send, response: Response) -> None:
    status, headers, body = response
    out = list(headers)
    out.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})
