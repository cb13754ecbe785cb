"""The scoring ASGI application: ``/``, ``/score`` and ``/swagger.json``.

It is a raw ASGI callable (no framework) because the per-request cost of the server is what
limits throughput for small models (see ``benchmarks/README.md``). ``run()`` is called inline
on the event loop: a worker scores one request at a time, as a gunicorn sync worker of the Azure
server does, without a thread hop. The scoring timeout is enforced with ``SIGALRM``
(``setitimer``): the handler raises :class:`ScoringTimeout` inside ``run()``. A ``run()`` stuck
inside C code (a long numpy or native call) is interrupted only when control returns to Python.
"""

from __future__ import annotations

import json
import logging
import signal
import time
import traceback
from collections.abc import Awaitable, Callable
from json import JSONDecodeError
from random import getrandbits
from typing import Any
from urllib.parse import parse_qsl

from aml_core.runtime import logs
from aml_core.runtime.raw import AMLRequest, AMLResponse, Headers, is_json_mimetype
from aml_core.runtime.script import UserScript, describe_exception
from aml_core.runtime.security import KeyCheck
from aml_core.runtime.swagger import SwaggerDocs, SwaggerNotFound

HEADER_LIMIT = 100
ACCESS_LOG_PATH_LIMIT = 512
DEFAULT_TIMEOUT_MS = 3_600_000
DEFAULT_MAX_BODY_BYTES = 100 * 1024 * 1024  # the legacy image's nginx client_max_body_size 100m

RUN_FAILED_MESSAGE = "An unexpected error occurred in scoring script. Check the logs for more info."
INTERNAL_ERROR_MESSAGE = "An unexpected internal error occurred. Check the logs for more info."
UNAUTHORIZED_MESSAGE = (
    "Authorization failed: send the service key as 'Authorization: Bearer <key>' "
    "(service.get_keys() returns it)."
)
NOT_FOUND_MESSAGE = (
    "The requested URL was not found on the server. If you entered the URL manually please "
    "check your spelling and try again."
)
METHOD_NOT_ALLOWED_MESSAGE = "The method is not allowed for the requested URL."

logger = logging.getLogger(logs.LOGGER_NAME)

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

_PLAIN_RESULTS = frozenset({list, dict, str, int, float, bool, type(None), tuple})
_JSON = b"application/json"
_HTML = b"text/html; charset=utf-8"
_FALSE = b"False"
_TRUE = b"True"


_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_request_id() -> str:
    """A random version-4 UUID string (a request id, not a secret: no os.urandom per request)."""
    h = "%032x" % ((getrandbits(128) & _UUID4_CLEAR) | _UUID4_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class ScoringTimeout(BaseException):
    """Raised inside run() by SIGALRM. A BaseException, so ``except Exception`` cannot eat it."""


class BadRequest(Exception):
    """The request cannot be turned into run()'s input (400, or the given status)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class _Alarm:
    armed = False


def _on_alarm(signum: int, frame: Any) -> None:
    if _Alarm.armed:
        _Alarm.armed = False
        raise ScoringTimeout()


def install_timeout_handler() -> None:
    """Install the SIGALRM handler; call once in the worker's main thread."""
    signal.signal(signal.SIGALRM, _on_alarm)


def _json_default(value: Any) -> Any:
    # numpy arrays and scalars (and anything else with tolist/item) become plain JSON values
    for attr in ("tolist", "item"):
        method = getattr(value, attr, None)
        if callable(method):
            return method()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _encode_result(result: Any) -> bytes:
    try:
        return json.dumps(result).encode("utf-8")
    except TypeError:
        return json.dumps(result, default=_json_default).encode("utf-8")


def _message(status: int, message: str, **extra: Any) -> tuple[int, bytes]:
    body = {"message": message}
    body.update(extra)
    return status, json.dumps(body).encode("utf-8")


def _parse_get_value(text: str) -> Any:
    try:
        return json.loads(text)
    except JSONDecodeError:
        return text
    except RecursionError:
        raise BadRequest("A query parameter is nested too deeply to be parsed as JSON.") from None
    except ValueError as exc:  # e.g. an integer longer than sys.get_int_max_str_digits()
        raise BadRequest(f"A query parameter cannot be parsed as JSON: {exc}") from None


def parse_query(query_string: bytes) -> dict[str, Any]:
    """``?a=1&b=[1,2]&c=x&c=y`` → ``{"a": 1, "b": [1, 2], "c": ["x", "y"]}`` (values as JSON)."""
    grouped: dict[str, list[str]] = {}
    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        grouped.setdefault(key, []).append(value)
    parsed: dict[str, Any] = {}
    for key, values in grouped.items():
        if len(values) == 1:
            parsed[key] = _parse_get_value(values[0])
        else:
            parsed[key] = [_parse_get_value(value) for value in values]
    return parsed


class ScoringApp:
    """The ASGI app of one worker, bound to one loaded :class:`UserScript`."""

    def __init__(
        self,
        script: UserScript,
        *,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        swagger: SwaggerDocs | None = None,
        path_prefix: str = "",
        server_version: str = "",
        access_log: bool = True,
        cors_origins: str = "",
        auth_keys: tuple[str, ...] = (),
    ) -> None:
        self.script = script
        #: ``/score`` needs ``Authorization: Bearer <key>`` when set (:mod:`aml_core.runtime.security`)
        self._key_check = KeyCheck(auth_keys) if auth_keys else None
        #: ``AML_CORS_ORIGINS``: comma-separated origins (or ``*``) allowed to call the service
        self._cors = (
            frozenset(o.strip().encode("latin-1") for o in cors_origins.split(",") if o.strip())
            or None
        )
        self.timeout_ms = int(timeout_ms)
        self._timeout_s = self.timeout_ms / 1000.0
        self.max_body_bytes = int(max_body_bytes)
        self.swagger = swagger or SwaggerDocs({})
        prefix = path_prefix.strip("/")
        self.path_prefix = f"/{prefix}" if prefix else ""
        self._server_version = server_version.encode("latin-1") if server_version else b""
        self.access_log = (
            logs.AccessLog() if access_log and logger.isEnabledFor(logging.INFO) else None
        )
        #: set when the worker stops: responses then ask clients to close the connection
        self.draining = False
        self._run = script.run
        self._mode = script.mode
        self._data_param = script.data_param
        self._wants_headers = script.wants_headers

    # --- ASGI entry point ---------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
            return
        if self._cors is not None:
            send = self._with_cors(scope, send)
        path = scope["path"]
        if self.path_prefix and path.startswith(self.path_prefix):
            rest = path[len(self.path_prefix) :]
            if rest == "" or rest.startswith("/"):
                path = rest or "/"
        if path == "/score":
            if self._key_check is not None and scope["method"] != "OPTIONS" and not self._authorized(scope):
                status, body = _message(401, UNAUTHORIZED_MESSAGE)
                await self._send(send, status, body, [(b"content-type", _JSON),
                                                      (b"www-authenticate", b'Bearer realm="score"')])
                return
            if scope["method"] == "POST" and self._mode == "json":
                # the hot path, inlined (each extra coroutine hop costs ~1-2 us per request)
                started = time.perf_counter()
                echo, rid, error, length, _ = self._request_ids(scope["headers"])
                if error is None and (length is None or length <= self.max_body_bytes):
                    message = await receive()
                    body = message.get("body", b"")
                    if message.get("more_body", False):
                        body = await self._read_body_rest(receive, body)
                    elif len(body) > self.max_body_bytes:
                        body = None
                    if body is None:
                        status, payload = self._too_large()
                        headers = self._finish_headers(echo, _JSON)
                    else:
                        try:
                            kwargs = {self._data_param: body.decode("utf-8")}
                        except UnicodeDecodeError as exc:
                            kwargs = None
                            status, payload = _message(
                                400, f"Input cannot be decoded as UTF-8: {exc}"
                            )
                            headers = self._finish_headers(echo, _JSON)
                        if kwargs is not None:
                            if self._wants_headers:
                                kwargs["request_headers"] = Headers(scope["headers"]).to_dict()
                            status, payload, headers = self._invoke(kwargs, rid, echo)
                    headers.append((b"content-length", str(len(payload)).encode()))
                    if self.draining:
                        headers.append((b"connection", b"close"))
                    await send(
                        {"type": "http.response.start", "status": status, "headers": headers}
                    )
                    await send({"type": "http.response.body", "body": payload})
                    if self.access_log is not None:
                        self._log("POST", scope, status, started, len(payload))
                    return
            await self._score(scope, receive, send)
        elif path == "/":
            await self._health(scope, send)
        elif path == "/swagger.json":
            await self._swagger(scope, send)
        else:
            status, body = _message(404, NOT_FOUND_MESSAGE)
            await self._send(send, status, body, [(b"content-type", _JSON)])

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                return self._key_check.accepts(value)
        return False

    def _with_cors(self, scope: Scope, send: Send) -> Send:
        """Add CORS headers for an allowed ``Origin`` (as flask-cors does for the Azure server)."""
        origin = request_headers = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value
            elif name == b"access-control-request-headers":
                request_headers = value
        if origin is None or not (origin in self._cors or b"*" in self._cors):
            return send
        extra = [(b"access-control-allow-origin", origin), (b"vary", b"Origin")]
        if scope["method"] == "OPTIONS":
            extra.append((b"access-control-allow-methods", b"GET, POST"))
            if request_headers:
                extra.append((b"access-control-allow-headers", request_headers))

        async def send_with_cors(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"], *extra]}
            await send(message)

        return send_with_cors

    async def _send(self, send: Send, status: int, body: bytes, headers: list) -> None:
        headers.append((b"content-length", str(len(body)).encode()))
        if self.draining:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    # --- request ids ---------------------------------------------------------------------------
    @staticmethod
    def _request_ids(raw_headers: list) -> tuple[list, str, Any, int | None, bytes]:
        """Validate the id headers.

        Returns (headers to echo, request id, ``(status, message)`` or ``None``,
        content-length, content-type).
        """
        request_id = legacy = client = trace = None
        content_length = None
        content_type = b""
        for name, value in raw_headers:
            if name == b"content-length":
                try:
                    content_length = int(value)
                except ValueError:
                    return [], "", (400, "Invalid Content-Length header."), None, b""
            elif name == b"content-type":
                content_type = value
            elif name == b"x-request-id":
                request_id = value
            elif name == b"x-ms-request-id":
                legacy = value
            elif name == b"x-ms-client-request-id":
                client = value
            elif name == b"traceid":
                trace = value
        for value in (request_id, legacy, client, trace):
            if value is not None and (b"\r" in value or b"\n" in value):
                return (
                    [],
                    "",
                    (400, "Request id headers must not contain CR or LF characters."),
                    None,
                    b"",
                )
        if request_id is None:
            rid = new_request_id()
            request_id = rid.encode()
        elif len(request_id) > HEADER_LIMIT:
            return (
                [],
                "",
                (431, f"x-request-id must not exceed {HEADER_LIMIT} characters"),
                None,
                b"",
            )
        else:
            rid = request_id.decode("latin-1")
        if legacy:
            if not client:
                client = legacy
        else:
            legacy = client or request_id
        if len(legacy) > HEADER_LIMIT or (client is not None and len(client) > HEADER_LIMIT):
            return (
                [(b"x-request-id", request_id)],
                rid,
                (
                    431,
                    (
                        "x-ms-request-id and x-ms-client-request-id must not exceed "
                        f"{HEADER_LIMIT} characters"
                    ),
                ),
                None,
                b"",
            )
        echo = [(b"x-request-id", request_id), (b"x-ms-request-id", legacy)]
        if client:
            echo.append((b"x-ms-client-request-id", client))
        if trace is not None:
            echo.append((b"TraceId", trace))
        return echo, rid, None, content_length, content_type

    def _finish_headers(self, echo: list, content_type: bytes, run_failed: bytes = _FALSE) -> list:
        headers = [(b"content-type", content_type), (b"x-ms-run-function-failed", run_failed)]
        headers.extend(echo)
        if self._server_version:
            headers.append((b"x-ms-server-version", self._server_version))
        return headers

    # --- routes ----------------------------------------------------------------------------------
    async def _read_only_route(self, scope: Scope, send: Send) -> list | None:
        """The echoed request-id headers of a GET/HEAD route, or None once an error
        (bad request id, another method) has been answered."""
        echo, _rid, error, _, _ = self._request_ids(scope["headers"])
        if error is not None:
            status, body = _message(*error)
            await self._send(send, status, body, self._finish_headers(echo, _JSON))
            return None
        if scope["method"] not in ("GET", "HEAD"):
            status, body = _message(405, METHOD_NOT_ALLOWED_MESSAGE)
            headers = self._finish_headers(echo, _JSON)
            headers.append((b"allow", b"GET, HEAD"))
            await self._send(send, status, body, headers)
            return None
        return echo

    async def _health(self, scope: Scope, send: Send) -> None:
        echo = await self._read_only_route(scope, send)
        if echo is None:
            return
        await self._send(send, 200, b"Healthy", [(b"content-type", _HTML), *echo])

    async def _swagger(self, scope: Scope, send: Send) -> None:
        echo = await self._read_only_route(scope, send)
        if echo is None:
            return
        version = None
        for key, value in parse_qsl(
            scope["query_string"].decode("latin-1"), keep_blank_values=True
        ):
            if key == "version":
                version = value
                break
        try:
            body = self.swagger.get(version)
            status = 200
        except SwaggerNotFound as exc:
            status, body = _message(404, str(exc))
        await self._send(send, status, body, self._finish_headers(echo, _JSON))

    async def _score(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        method = scope["method"]
        echo, rid, error, content_length, content_type = self._request_ids(scope["headers"])
        if error is not None:
            status, body = _message(*error)
            await self._send(send, status, body, self._finish_headers(echo, _JSON))
            return
        if method not in ("POST", "GET", "OPTIONS", "HEAD"):
            status, body = _message(405, METHOD_NOT_ALLOWED_MESSAGE)
            headers = self._finish_headers(echo, _JSON)
            headers.append((b"allow", b"GET, HEAD, POST, OPTIONS"))
            await self._send(send, status, body, headers)
            self._log(method, scope, status, started, len(body))
            return
        if method == "OPTIONS" and self._mode != "raw":
            await self._send(send, 200, b"", self._finish_headers(echo, _HTML))
            return

        body = b""
        if method == "POST":
            if content_length is not None and content_length > self.max_body_bytes:
                status, payload = self._too_large()
                await self._send(send, status, payload, self._finish_headers(echo, _JSON))
                self._log(method, scope, status, started, len(payload))
                return
            body = await self._read_body(receive)
            if body is None:
                status, payload = self._too_large()
                await self._send(send, status, payload, self._finish_headers(echo, _JSON))
                self._log(method, scope, status, started, len(payload))
                return

        try:
            kwargs = self._run_arguments(scope, method, body, content_type)
        except BadRequest as exc:
            status, payload = _message(exc.status, str(exc))
            await self._send(send, status, payload, self._finish_headers(echo, _JSON))
            self._log(method, scope, status, started, len(payload))
            return
        if self._wants_headers:
            kwargs["request_headers"] = Headers(scope["headers"]).to_dict()

        status, payload, headers = self._invoke(kwargs, rid, echo)
        await self._send(send, status, payload, headers)
        self._log(method, scope, status, started, len(payload))

    # --- helpers -------------------------------------------------------------------------------
    def _too_large(self) -> tuple[int, bytes]:
        return _message(
            413,
            f"The request body is larger than the limit of {self.max_body_bytes} bytes "
            "(raise it with AML_MAX_BODY_BYTES or the spec's max_body_bytes).",
        )

    async def _read_body(self, receive: Receive) -> bytes | None:
        message = await receive()
        body = message.get("body", b"")
        if not message.get("more_body", False):
            return body if len(body) <= self.max_body_bytes else None
        return await self._read_body_rest(receive, body)

    async def _read_body_rest(self, receive: Receive, body: bytes) -> bytes | None:
        """The rest of a chunked or multi-part body; ``None`` once it passes the limit."""
        if len(body) > self.max_body_bytes:
            return None
        chunks = [body]
        size = len(body)
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _run_arguments(self, scope: Scope, method: str, body: bytes, content_type: bytes) -> dict:
        mode = self._mode
        if mode == "json":
            if method == "POST":
                try:
                    return {self._data_param: body.decode("utf-8")}
                except UnicodeDecodeError as exc:
                    raise BadRequest(f"Input cannot be decoded as UTF-8: {exc}") from None
            return {self._data_param: json.dumps(parse_query(scope["query_string"]))}
        if mode == "raw":
            request = AMLRequest(
                method,
                scope["path"],
                scope["query_string"],
                Headers(scope["headers"]),
                body,
                scope.get("root_path", ""),
            )
            return {self._data_param: request}
        # inference-schema: the JSON object's keys are run()'s keyword arguments
        if method == "POST":
            mimetype = content_type.decode("latin-1").split(";")[0].strip().lower()
            if not is_json_mimetype(mimetype):
                raise BadRequest("Expects Content-Type to be application/json", status=415)
            try:
                document = json.loads(body)
            except RecursionError:
                raise BadRequest("POST body is nested too deeply to be decoded as JSON.") from None
            except (ValueError, UnicodeDecodeError) as exc:
                if body:
                    raise BadRequest(f"POST body could not be decoded as JSON: {exc}") from None
                raise BadRequest("POST body is empty. Expecting a JSON dictionary.") from None
            if not isinstance(document, dict):
                raise BadRequest("POST body should be a JSON dictionary.")
        else:
            document = parse_query(scope["query_string"])
        kwargs = {}
        for param in self.script.schema_params:
            value = document.get(param.name, param.default)
            if value is param.empty:
                raise BadRequest(f"A value is not provided for the {param.name!r} parameter.")
            kwargs[param.name] = value
        return kwargs

    def _invoke(self, kwargs: dict, rid: str, echo: list) -> tuple[int, bytes, list]:
        logs.current_request_id = rid
        started = time.perf_counter()
        try:
            _Alarm.armed = True
            signal.setitimer(signal.ITIMER_REAL, self._timeout_s)
            try:
                result = self._run(**kwargs)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                _Alarm.armed = False
        except ScoringTimeout:
            elapsed = (time.perf_counter() - started) * 1000
            logger.error(
                "[%s] run() did not finish within %d ms (SCORING_TIMEOUT_MS); it was interrupted",
                rid,
                self.timeout_ms,
            )
            status, payload = _message(500, f"Scoring timeout after {self.timeout_ms} ms")
            headers = self._finish_headers(echo, _JSON, _TRUE)
            headers.append((b"x-ms-run-fn-exec-ms", f"{elapsed:.3f}".encode()))
            return status, payload, headers
        except Exception as exc:  # noqa: BLE001 - any error in user code is a 500
            elapsed = (time.perf_counter() - started) * 1000
            logger.error("[%s] Encountered Exception: %s", rid, traceback.format_exc().rstrip())
            status, payload = _message(500, RUN_FAILED_MESSAGE, error=describe_exception(exc))
            headers = self._finish_headers(echo, _JSON, _TRUE)
            headers.append((b"x-ms-run-fn-exec-ms", f"{elapsed:.3f}".encode()))
            return status, payload, headers
        finally:
            logs.current_request_id = logs.NULL_REQUEST_ID
        elapsed_ms = f"{(time.perf_counter() - started) * 1000:.3f}".encode()

        if result.__class__ not in _PLAIN_RESULTS and (
            isinstance(result, AMLResponse) or _is_response_like(result)
        ):
            return self._passthrough(result, echo, elapsed_ms)
        try:
            payload = _encode_result(result)
        except (TypeError, ValueError) as exc:
            logger.error("[%s] run() returned a value that cannot be sent as JSON: %s", rid, exc)
            status, payload = _message(
                500,
                INTERNAL_ERROR_MESSAGE,
                error=f"run() returned a value that is not JSON serializable: {exc}",
            )
            return status, payload, self._finish_headers(echo, _JSON)
        headers = [
            (b"content-type", _JSON),
            (b"x-ms-run-function-failed", _FALSE),
            (b"x-ms-run-fn-exec-ms", elapsed_ms),
        ]
        headers.extend(echo)
        if self._server_version:
            headers.append((b"x-ms-server-version", self._server_version))
        return 200, payload, headers

    def _passthrough(self, response: Any, echo: list, elapsed_ms: bytes) -> tuple[int, bytes, list]:
        status = int(response.status_code)
        if isinstance(response, AMLResponse):
            body = response.body
            own = response.headers
            failed = response.run_function_failed
        else:  # a Flask/Werkzeug response from the real azureml.contrib.services
            body = response.get_data()
            own = list(response.headers.items())
            failed = False
        headers = []
        for name, value in own:
            lower = name.lower()
            if lower in ("content-length", "x-ms-run-function-failed"):
                continue
            headers.append((lower.encode("latin-1"), str(value).encode("latin-1")))
        failed = failed or status >= 500
        headers.append((b"x-ms-run-function-failed", _TRUE if failed else _FALSE))
        headers.append((b"x-ms-run-fn-exec-ms", elapsed_ms))
        headers.extend(echo)
        if self._server_version:
            headers.append((b"x-ms-server-version", self._server_version))
        return status, body, headers

    def _log(self, method: str, scope: Scope, status: int, started: float, length: int) -> None:
        if self.access_log is None:
            return
        path = scope["path"]
        if scope["query_string"]:
            path = f"{path}?{scope['query_string'].decode('latin-1')}"
            if len(path) > ACCESS_LOG_PATH_LIMIT:
                path = path[:ACCESS_LOG_PATH_LIMIT] + "..."
        elapsed = (time.perf_counter() - started) * 1000
        self.access_log.write(method, path, status, elapsed, length)


def _is_response_like(value: Any) -> bool:
    return (
        hasattr(value, "status_code")
        and hasattr(value, "headers")
        and callable(getattr(value, "get_data", None))
    )


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
