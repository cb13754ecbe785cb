"""The IoT Edge workload API modules use to get the trust bundle and have tokens signed
(azure-iot-device ``iothub/edge_hsm.py``):

- ``GET /trust-bundle?api-version=...`` → ``{"certificate": "<CA PEM>"}``;
- ``POST /modules/{module}/genid/{generation}/sign?api-version=...`` with
  ``{"keyId": "primary", "algo": "HMACSHA256", "data": "<base64>"}`` → ``{"digest": "<base64>"}``,
  an HMAC-SHA256 with the module's primary key, only for a module of this device whose
  generation id matches (so a removed and re-created module cannot use a stale identity).

Plain HTTP on a loopback port, as the SDK allows for a non-``unix://`` workload URI.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, Router

from aml_emulator.iothub.exceptions import HubError
from aml_emulator.iothub.models import Hub

API_VERSION = "2019-01-30"


class WorkloadApp:
    def __init__(self, hub: Hub, device_id: str, trust_bundle: str) -> None:
        self.hub = hub
        self.device_id = device_id
        self.trust_bundle = trust_bundle
        self.app = Router([
            Route("/trust-bundle", self.get_trust_bundle, methods=["GET"]),
            Route("/modules/{module_id}/genid/{generation_id}/sign", self.sign, methods=["POST"]),
        ])

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    async def get_trust_bundle(self, request: Request) -> JSONResponse:
        return JSONResponse({"certificate": self.trust_bundle})

    async def sign(self, request: Request) -> JSONResponse:
        module_id = request.path_params["module_id"]
        try:
            identity = self.hub.identity(self.device_id, module_id)
        except HubError as exc:
            return JSONResponse({"message": exc.message}, status_code=404)
        if identity.generation_id != request.path_params["generation_id"]:
            return JSONResponse({"message": f"Module {module_id} has another generation id; it was re-created."},
                                status_code=404)
        try:
            body = json.loads(await request.body())
            data = base64.b64decode(body["data"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"message": "The body must be JSON with a base64 'data' field."}, status_code=400)
        if body.get("algo") != "HMACSHA256" or body.get("keyId") not in ("primary", "secondary"):
            return JSONResponse({"message": "Only keyId primary|secondary with algo HMACSHA256 is supported."},
                                status_code=400)
        key = identity.primary_key if body["keyId"] == "primary" else identity.secondary_key
        digest = hmac.new(base64.b64decode(key), data, hashlib.sha256).digest()
        return JSONResponse({"digest": base64.b64encode(digest).decode()})
