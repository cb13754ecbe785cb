"""The benchmark's floor: a bare ASGI app calling the same ``score.py`` on the same stack.

Served by ``uvicorn scoring_bare_app:app --loop uvloop --http httptools``. It does only what
any server must: read the body, ``run(body.decode())``, ``json.dumps`` the result, and answer
``GET /`` for the readiness probe. No request ids, timeout, limits or logging.
The entry script comes from ``AZUREML_ENTRY_SCRIPT`` (an absolute path).
"""

from __future__ import annotations

import importlib.util
import json
import os

_spec = importlib.util.spec_from_file_location("bare_entry", os.environ["AZUREML_ENTRY_SCRIPT"])
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
_module.init()
_run = _module.run


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/score":
        message = await receive()
        body = message.get("body", b"")
        while message.get("more_body"):
            message = await receive()
            body += message.get("body", b"")
        payload = json.dumps(_run(body.decode("utf-8"))).encode()
        content_type = b"application/json"
    else:
        payload = b"Healthy"
        content_type = b"text/plain"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
