"""The host's HTTP front: ``/api/<function>`` for HTTP triggers with the Functions key rules,
``/admin/host/status`` (master key), and ``/`` answering 200 once the app is loaded (what App
Service calls to see the container is up).

Keys come from the app setting :data:`KEYS_SETTING` (JSON, the shape of ARM's host list-keys
plus each function's keys), which the platform sets; ``function`` level accepts the function's
keys, any host function key or the master key; ``admin`` only the master key; the key is the
``x-functions-key`` header or the ``code`` query parameter. A missing or wrong key is 401.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
from typing import Any
from urllib.parse import parse_qsl, urlencode

from aml_provider_functions.host.app import FunctionApp

log = logging.getLogger("aml.functions.host")
#: the app setting with the host's and functions' keys (set by the platform, never logged)
KEYS_SETTING = "AML_FUNCTIONS_KEYS"


class Keys:
    def __init__(self, document: dict[str, Any]) -> None:
        self.master = str(document.get("masterKey") or "")
        self.host_function_keys = [str(k) for k in (document.get("functionKeys") or {}).values()]
        self.functions = {name.lower(): [str(k) for k in keys.values()]
                          for name, keys in (document.get("functions") or {}).items()}

    @classmethod
    def from_environment(cls) -> "Keys":
        text = os.environ.get(KEYS_SETTING, "")
        return cls(json.loads(text) if text else {})

    @staticmethod
    def _matches(given: str, candidates: list[str]) -> bool:
        found = False
        for candidate in candidates:  # compare with every key: the time says nothing about which matched
            found |= bool(candidate) and hmac.compare_digest(given.encode(), candidate.encode())
        return found

    def allows(self, level: str, function: str, given: str | None) -> bool:
        if level == "anonymous":
            return True
        if not given:
            return False
        if level == "admin":
            return self._matches(given, [self.master])
        return self._matches(given, [self.master, *self.host_function_keys,
                                     *self.functions.get(function.lower(), [])])


async def _body(receive: Any) -> bytes:
    chunks = bytearray()
    while True:
        message = await receive()
        chunks += message.get("body", b"")
        if not message.get("more_body"):
            return bytes(chunks)


async def _send(send: Any, status: int, body: bytes, media: str = "text/plain; charset=utf-8") -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", media.encode()), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class HostHttpApp:
    """ASGI app of the host."""

    def __init__(self, app: FunctionApp, keys: Keys, host_id: str) -> None:
        self.app = app
        self.keys = keys
        self.host_id = host_id

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path = scope["path"].rstrip("/") or "/"
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        params = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        given = headers.get("x-functions-key") or params.get("code")
        if path == "/":
            await _send(send, 200, b"Your Functions 4.0 app is up and running")
            return
        if path == "/admin/host/status":
            if not self.keys.allows("admin", "", given):
                await _send(send, 401, b"")
                return
            await _send(send, 200, json.dumps({"id": self.host_id, "state": "Running", "version": "4.0"}).encode(),
                        "application/json")
            return
        prefix = f"/{self.app.route_prefix}/" if self.app.route_prefix else "/"
        function = self.app.by_name(path[len(prefix):]) if path.startswith(prefix) else None
        if function is None or function.trigger["type"] != "httpTrigger" or function.disabled:
            await _send(send, 404, b"")
            return
        trigger = function.trigger
        methods = [m.lower() for m in trigger.get("methods") or ("get", "post")]
        if scope["method"].lower() not in methods:
            await _send(send, 405, b"")
            return
        if not self.keys.allows(str(trigger.get("authLevel") or "function").lower(), function.name, given):
            await _send(send, 401, b"")
            return
        import azure.functions as func

        body = await _body(receive)
        visible = {k: v for k, v in params.items() if k != "code"}
        url = f"http://{headers.get('host', 'localhost')}{scope['path']}" + (f"?{urlencode(visible)}" if visible else "")
        request = func.HttpRequest(scope["method"], url, headers=headers, params=visible, route_params={}, body=body)
        loop = asyncio.get_running_loop()
        try:
            result, _ = await loop.run_in_executor(None, function.invoke, request,
                                                   "This function was programmatically called via the host APIs.")
        except Exception as exc:  # the function's own failure: 500, as the host answers
            await _send(send, 500, json.dumps({"message": f"Exception while executing function: "
                                                          f"Functions.{function.name}: {exc}"}).encode(),
                        "application/json")
            return
        if not isinstance(result, func.HttpResponse):
            await _send(send, 204 if result is None else 200, b"" if result is None else str(result).encode())
            return
        response_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in result.headers.items()
                            if k.lower() not in ("content-length", "content-type")]
        payload = result.get_body()
        response_headers += [(b"content-type", (result.mimetype or "text/plain").encode()),
                             (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": result.status_code, "headers": response_headers})
        await send({"type": "http.response.body", "body": payload})
